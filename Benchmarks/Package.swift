// swift-tools-version:6.1
// Micro-benchmarks of the presence model: `cd Benchmarks && swift package benchmark`.
import PackageDescription

let package = Package(
    name: "HeadcountBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "headcount", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "RegistryBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "HeadcountCore", package: "headcount"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/RegistryBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
