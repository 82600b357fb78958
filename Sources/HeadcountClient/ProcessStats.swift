#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Memory and CPU of a process, read from `/proc` (Linux).
public struct ProcessSample: Sendable, Hashable, Codable {
    /// Resident set size in KiB (`VmRSS`).
    public var rssKB: Int
    /// User + system CPU seconds since the process started.
    public var cpuSeconds: Double

    public init(rssKB: Int, cpuSeconds: Double) {
        self.rssKB = rssKB
        self.cpuSeconds = cpuSeconds
    }

    public static func + (a: ProcessSample, b: ProcessSample) -> ProcessSample {
        ProcessSample(rssKB: a.rssKB + b.rssKB, cpuSeconds: a.cpuSeconds + b.cpuSeconds)
    }
}

public enum ProcessStats {
    /// Clock ticks per second of `utime`/`stime`.
    public static let clockTicksPerSecond: Double = {
        let t = sysconf(Int32(_SC_CLK_TCK))
        return t > 0 ? Double(t) : 100
    }()

    /// `VmRSS` in KiB from the text of `/proc/PID/status`.
    public static func parseRSS(status: String) -> Int? {
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let digits = line.dropFirst("VmRSS:".count).filter { $0.isASCII && $0.isNumber }
            return Int(digits)
        }
        return nil
    }

    /// (utime + stime) in clock ticks and the parent pid, from the text of `/proc/PID/stat`.
    /// The command name may contain spaces and parentheses: fields are counted after the last `)`.
    public static func parseStat(_ stat: String) -> (ticks: Int, ppid: Int)? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // After ")": state(3) ppid(4) pgrp(5) session(6) tty(7) tpgid(8) flags(9) minflt(10) cminflt(11)
        // majflt(12) cmajflt(13) utime(14) stime(15): indices 0-based from state.
        guard fields.count > 12, let ppid = Int(fields[1]), let utime = Int(fields[11]), let stime = Int(fields[12]) else { return nil }
        return (utime + stime, ppid)
    }

    /// Reads a small text file fully (procfs files report size 0, so read until EOF).
    public static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > 1 << 20 { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// RSS and CPU of one process, or nil if it is gone.
    public static func sample(pid: Int32) -> ProcessSample? {
        guard let status = readText("/proc/\(pid)/status"), let rss = parseRSS(status: status),
              let stat = readText("/proc/\(pid)/stat"), let parsed = parseStat(stat) else { return nil }
        return ProcessSample(rssKB: rss, cpuSeconds: Double(parsed.ticks) / clockTicksPerSecond)
    }

    /// The sum over `pids` (missing processes count as zero; `missing` lists them).
    public static func sample(pids: [Int32]) -> (total: ProcessSample, missing: [Int32]) {
        var total = ProcessSample(rssKB: 0, cpuSeconds: 0)
        var missing: [Int32] = []
        for pid in pids {
            if let s = sample(pid: pid) { total = total + s } else { missing.append(pid) }
        }
        return (total, missing)
    }

    /// Direct children of `pid`, found by scanning `/proc/*/stat`.
    public static func children(of pid: Int32) -> [Int32] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var result: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                let bytes = raw.prefix(while: { $0 != 0 })
                return String(decoding: bytes, as: UTF8.self)
            }
            guard let child = Int32(name), child != pid else { continue }
            if let stat = readText("/proc/\(child)/stat"), let parsed = parseStat(stat), parsed.ppid == Int(pid) {
                result.append(child)
            }
        }
        return result.sorted()
    }

    /// A counter of `/proc/net/netstat` (`TcpExt` section), e.g. `ListenOverflows`: connection
    /// attempts dropped because a listener's accept queue was full. Counts for the whole host.
    public static func tcpExtCounter(_ name: String, netstat: String? = readText("/proc/net/netstat")) -> Int? {
        guard let netstat else { return nil }
        let lines = netstat.split(separator: "\n")
        for (i, line) in lines.enumerated() where line.hasPrefix("TcpExt:") && i + 1 < lines.count && lines[i + 1].hasPrefix("TcpExt:") {
            let names = line.split(separator: " ")
            let values = lines[i + 1].split(separator: " ")
            guard let index = names.firstIndex(where: { $0 == name }), index < values.count else { return nil }
            return Int(values[index])
        }
        return nil
    }

    /// Raises the soft open-files limit to the hard limit; returns the resulting soft limit.
    @discardableResult
    public static func raiseOpenFilesLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return -1 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }
}
