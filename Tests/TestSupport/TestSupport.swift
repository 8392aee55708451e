import Foundation
import ESPCore

/// Where things are, for tests: the package root, ../shared fixtures, the Python oracle and the
/// built `espforge` binary.
public enum TestEnvironment {
    /// True when running under CI (`CI=true`): missing oracle or fixtures are failures, not skips.
    public static var isCI: Bool {
        let v = ProcessInfo.processInfo.environment["CI"]?.lowercased()
        return v == "true" || v == "1"
    }

    /// The package root (the folder holding Package.swift).
    public static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() } // Tests/TestSupport/TestSupport.swift
        return url
    }()

    /// `../shared` beside the package root, or `$ESPFORGE_SHARED`.
    public static var sharedDir: URL {
        if let p = ProcessInfo.processInfo.environment["ESPFORGE_SHARED"], !p.isEmpty {
            return URL(fileURLWithPath: p)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    }

    /// Path of an Espressif fixture, e.g. `fixture("secure/bootloader.bin")`.
    public static func fixture(_ relative: String) -> URL {
        sharedDir.appendingPathComponent("fixtures/espressif").appendingPathComponent(relative)
    }

    public static var fixturesAvailable: Bool {
        FileManager.default.fileExists(atPath: fixture("INDEX.md").path)
    }

    /// Use as a trait condition: run when fixtures exist, and always in CI (where they must exist).
    public static var fixturesOrCI: Bool { fixturesAvailable || isCI }

    /// Reads a fixture; throws a clear error if it is missing.
    public static func fixtureBytes(_ relative: String) throws -> [UInt8] {
        let url = fixture(relative)
        guard let d = FileManager.default.contents(atPath: url.path) else {
            throw TestSupportError.missing("fixture \(url.path) (is ../shared beside the package?)")
        }
        return [UInt8](d)
    }

    /// A fresh temporary folder, removed by the caller if it cares.
    public static func temporaryDirectory(_ label: String = "espforge-test") throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// Espressif's Python tools, installed by `scripts/test` into `.venv-oracle`.
public enum Oracle {
    /// `$ESPFORGE_ORACLE` (a venv `bin` folder) or `.venv-oracle/bin` in the package.
    public static var binDir: URL {
        if let p = ProcessInfo.processInfo.environment["ESPFORGE_ORACLE"], !p.isEmpty {
            return URL(fileURLWithPath: p)
        }
        return TestEnvironment.packageRoot.appendingPathComponent(".venv-oracle/bin")
    }

    public static var available: Bool {
        FileManager.default.isExecutableFile(atPath: binDir.appendingPathComponent("esptool").path)
    }

    /// Trait condition: run when the oracle is installed, and always in CI (where it must be).
    public static var availableOrCI: Bool { available || TestEnvironment.isCI }

    public static let skipReason =
        "Espressif oracle not installed: run ./scripts/test (it installs esptool 5.6.0 and esp-idf-nvs-partition-gen 0.3.0)"

    /// Path of an oracle executable (`esptool`, `espsecure`, `espefuse`, `python`); throws if missing.
    public static func tool(_ name: String) throws -> String {
        let path = binDir.appendingPathComponent(name).path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestSupportError.missing("oracle tool \(path); run ./scripts/test to install it")
        }
        return path
    }

    /// Runs an oracle tool and returns its result.
    @discardableResult
    public static func run(_ name: String, _ arguments: [String], stdin: [UInt8]? = nil) throws -> ProcessResult {
        try ProcessRunner.run(try tool(name), arguments, stdin: stdin)
    }
}

/// The `espforge` executable built alongside the tests.
public enum Espforge {
    public static var path: String {
        if let p = ProcessInfo.processInfo.environment["ESPFORGE_BIN"], !p.isEmpty { return p }
        // The test bundle lives in the same build products folder as the executable.
        let candidates = [
            Bundle.main.bundleURL.appendingPathComponent("espforge"),
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("espforge"),
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("espforge"),
        ]
        for c in candidates where FileManager.default.isExecutableFile(atPath: c.path) { return c.path }
        return TestEnvironment.packageRoot.appendingPathComponent(".build/debug/espforge").path
    }

    @discardableResult
    public static func run(_ arguments: [String], stdin: [UInt8]? = nil) throws -> ProcessResult {
        try ProcessRunner.run(path, arguments, stdin: stdin)
    }
}

public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: [UInt8]
    public let stderr: [UInt8]
    public var out: String { String(decoding: stdout, as: UTF8.self) }
    public var err: String { String(decoding: stderr, as: UTF8.self) }
}

public enum ProcessRunner {
    public static func run(_ executable: String, _ arguments: [String], stdin: [UInt8]? = nil,
                           environment: [String: String]? = nil) throws -> ProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if let environment { p.environment = environment }
        let outPipe = Pipe(), errPipe = Pipe(), inPipe = Pipe()
        p.standardOutput = outPipe
        p.standardError = errPipe
        p.standardInput = inPipe
        try p.run()
        if let stdin { writeAll(inPipe.fileHandleForWriting.fileDescriptor, stdin) }
        try? inPipe.fileHandleForWriting.close()
        // Drain both pipes concurrently so a chatty child cannot dead-lock on a full pipe.
        // Raw read(2) with EINTR retry: Foundation's readDataToEndOfFile traps on EINTR.
        let errBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        let errFD = errPipe.fileHandleForReading.fileDescriptor
        DispatchQueue.global().async {
            errBox.bytes = readAll(errFD)
            group.leave()
        }
        let out = readAll(outPipe.fileHandleForReading.fileDescriptor)
        group.wait()
        p.waitUntilExit()
        return ProcessResult(status: p.terminationStatus, stdout: out, stderr: errBox.bytes)
    }
}

final class DataBox: @unchecked Sendable { var bytes: [UInt8] = [] }

/// Writes all of `bytes`, retrying on EINTR; stops quietly if the reader has gone.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        if n > 0 { done += n; continue }
        if n < 0 && errno == EINTR { continue }
        break
    }
}

/// Reads a file descriptor to its end, retrying on EINTR.
func readAll(_ fd: Int32) -> [UInt8] {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 { out.append(contentsOf: buffer[0..<n]); continue }
        if n < 0 && errno == EINTR { continue }
        break
    }
    return out
}

public enum TestSupportError: Error, CustomStringConvertible {
    case missing(String)
    public var description: String {
        switch self { case .missing(let what): return "missing \(what)" }
    }
}

/// A small deterministic PRNG (SplitMix64) for randomized differential tests: failures print
/// their seed and can be replayed.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var generator: SplitMix64
    public var state: UInt64 { generator.state }
    public init(seed: UInt64) { generator = SplitMix64(seed: seed) }
    public mutating func next() -> UInt64 { generator.next() }
    public mutating func bytes(_ n: Int) -> [UInt8] {
        (0..<n).map { _ in UInt8.random(in: 0...255, using: &self) }
    }
}

/// Seed for randomized tests: `$ESPFORGE_TEST_SEED` or a fresh one (print it in failures).
public func testSeed() -> UInt64 {
    if let s = ProcessInfo.processInfo.environment["ESPFORGE_TEST_SEED"], let v = UInt64(s) { return v }
    return UInt64.random(in: 1...UInt64.max)
}
