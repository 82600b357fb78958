#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// CLOCK_MONOTONIC in nanoseconds. On Linux every process reads the same clock, so worker processes
/// can report raw timestamps that the parent compares with its own.
public enum MonotonicClock {
    @inline(__always)
    public static func nanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    public static func seconds(since start: Int64) -> Double {
        Double(nanoseconds() - start) / 1e9
    }
}
