import Foundation
import Testing
import TestSupport

/// SoftHSM2 for the tests: one temporary token directory per test process (SOFTHSM2_CONF is read
/// once, when the module is first initialised), with tokens initialised by softhsm2-util. Keys
/// are generated on them by espforge's own PKCS#11 code with unique labels.
enum SoftHSM {
    static let moduleCandidates = [
        "/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so",
        "/opt/homebrew/lib/softhsm/libsofthsm2.so",
    ]
    static var modulePath: String? { moduleCandidates.first { FileManager.default.fileExists(atPath: $0) } }
    static var utilPath: String? {
        ["/usr/bin/softhsm2-util", "/usr/local/bin/softhsm2-util", "/opt/homebrew/bin/softhsm2-util"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }
    static var available: Bool { modulePath != nil && utilPath != nil }
    /// Run when SoftHSM2 is installed, and always in CI (where its absence must fail, not skip).
    static var availableOrCI: Bool { available || TestEnvironment.isCI }

    static let pin = "4321"
    static let soPIN = "87654321"
    /// The main token, one for wrong-PIN tests, one whose sessions a test closes under it.
    static let tokens = ["espforge-test", "espforge-pin", "espforge-removal"]

    struct Setup: Sendable {
        let directory: URL
        let conf: String
        let module: String
    }

    nonisolated(unsafe) private static var cached: Setup?
    private static let lock = NSLock()

    /// The process-wide SoftHSM setup (created on first use). Throws when SoftHSM2 is missing.
    static func setup() throws -> Setup {
        lock.lock(); defer { lock.unlock() }
        if let cached { return cached }
        guard let module = modulePath, let util = utilPath else {
            throw TestSupportError.missing("SoftHSM2 (Debian: apt-get install softhsm2); ./scripts/test installs it")
        }
        let dir = try TestEnvironment.temporaryDirectory("espforge-softhsm")
        let tokenDir = dir.appendingPathComponent("tokens")
        try FileManager.default.createDirectory(at: tokenDir, withIntermediateDirectories: true)
        let conf = dir.appendingPathComponent("softhsm2.conf").path
        try "directories.tokendir = \(tokenDir.path)\nobjectstore.backend = file\nlog.level = ERROR\n"
            .write(toFile: conf, atomically: true, encoding: .utf8)
        setenv("SOFTHSM2_CONF", conf, 1)
        var env = ProcessInfo.processInfo.environment
        env["SOFTHSM2_CONF"] = conf
        for label in tokens {
            let r = try ProcessRunner.run(util, ["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", soPIN],
                                          environment: env)
            guard r.status == 0 else { throw TestSupportError.missing("softhsm2-util --init-token failed: \(r.err)") }
        }
        let s = Setup(directory: dir, conf: conf, module: module)
        cached = s
        return s
    }

    /// A label no other test uses.
    static func uniqueLabel(_ prefix: String) -> String { "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())" }
}
