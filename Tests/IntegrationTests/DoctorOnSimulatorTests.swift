import BootSimulator
import Foundation
import Testing
import TestSupport

/// `espforge doctor` on boot logs the simulator produced (`device boot`) for the common failures.
@Suite("doctor on simulated boot logs", .enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared/fixtures"))
struct DoctorOnSimulatorTests {
    struct Diagnosis: Decodable {
        struct Primary: Decodable {
            var rule: String
            var cause: String
            var evidence: [Line]
        }
        struct Line: Decodable { var text: String }
        var primary: Primary?
    }

    /// Boots `state`, writes the console log to a file and runs doctor on it (plus `extra` arguments).
    func diagnose(_ ws: Workspace, _ state: String, sdkconfig: String?, extra: [String] = []) throws -> (BootOutcome, Diagnosis.Primary) {
        let outcome = try deviceBoot(state, sdkconfig: sdkconfig)
        let log = try ws.file("boot-\(UUID().uuidString).log", text: outcome.consoleText)
        let r = try Espforge.run(["doctor", log, "--json"] + extra)
        #expect(r.status == 0, "\(r.err)")
        let d = try JSONDecoder().decode(Diagnosis.self, from: Data(r.stdout))
        guard let p = d.primary else { throw TestSupportError.missing("no diagnosis for:\n\(outcome.consoleText)") }
        return (outcome, p)
    }

    @Test func seedIsHeaderRewrittenAfterSigning() throws {
        let ws = try Workspace("espforge-doctor-seed")
        let key = try Scenarios.keyA()
        let app = try Scenarios.app(key: key)
        let state = try ws.device("dev")
        try store(state, [(0x1000, try Scenarios.seedBootloader(key: key, rehash: false)), (0x10000, try Scenarios.table()),
                          (0x60000, app), (0x210000, app)])
        let sdk = try ws.file("sdkconfig", text: Scenarios.seedSDKConfigText)
        let (outcome, plain) = try diagnose(ws, state, sdkconfig: sdk)
        #expect(!outcome.booted && outcome.efusesBurned.isEmpty)
        #expect(plain.rule == "DR001", "\(plain)")
        #expect(plain.cause.contains("rewritten after signing"), "\(plain.cause)")
        // With the build's bootloader (signed as 8MB) doctor finds the header combination.
        let built = try ws.file("built-bootloader.bin", try Scenarios.signedBootloader(size: "8MB", key: key))
        let (_, correlated) = try diagnose(ws, try ws.copy(state, to: "again"), sdkconfig: nil, extra: ["0x1000", built])
        #expect(correlated.rule == "DR001")
        #expect(correlated.cause.contains("built as DIO 40m 8MB, found as DIO 40m 4MB"), "\(correlated.cause)")
    }

    @Test func appSignedWithAnotherKey() throws {
        let ws = try Workspace("espforge-doctor-keys")
        let app = try Scenarios.app(key: try Scenarios.keyB())
        let state = try ws.device("dev")
        try store(state, [(0x1000, try Scenarios.signedBootloader(key: try Scenarios.keyA())), (0x10000, try Scenarios.table()),
                          (0x60000, app), (0x210000, app)])
        let (outcome, d) = try diagnose(ws, state, sdkconfig: try ws.file("sdkconfig", text: Scenarios.seedSDKConfigText))
        #expect(!outcome.booted && outcome.efusesBurned.isEmpty)
        #expect(d.rule == "DR003", "\(d)")
        #expect(d.cause == "the app is signed with a different key than the bootloader")
    }

    @Test func plaintextBootloaderOnAnEncryptedChip() throws {
        let ws = try Workspace("espforge-doctor-plaintext")
        let key = try Scenarios.keyA()
        let bootloader = try Scenarios.signedBootloader(key: key)
        let app = try Scenarios.app(key: key)
        let state = try ws.device("dev")
        try store(state, [(0x1000, bootloader), (0x10000, try Scenarios.table()), (0x60000, app), (0x210000, app)])
        let first = try deviceBoot(state, sdkconfig: try ws.file("sdkconfig", text: Scenarios.seedSDKConfigText))
        #expect(first.booted && first.flashEncryptionEnabled)
        try store(state, [(0x1000, bootloader)])   // re-flashed without --encrypt
        let (outcome, d) = try diagnose(ws, state, sdkconfig: nil)
        #expect(outcome.result == .romHalted)
        #expect(outcome.log.contains { $0.text.hasPrefix("invalid header: 0x") })
        #expect(d.rule == "DR011", "\(d)")
        #expect(d.cause == "the bytes at the bootloader offset are not a bootloader image as the ROM reads them")
        #expect(d.evidence.contains { $0.text.hasPrefix("invalid header: 0x") })
    }

    @Test func blankFlash() throws {
        let ws = try Workspace("espforge-doctor-blank")
        let (outcome, d) = try diagnose(ws, try ws.device("dev"), sdkconfig: nil)
        #expect(outcome.log.contains { $0.text == "invalid header: 0xffffffff" })
        #expect(d.rule == "DR012", "\(d)")
        #expect(d.cause == "nothing is written at the bootloader offset (erased flash)")
    }

    @Test func romSecureBootCheckFail() throws {
        let ws = try Workspace("espforge-doctor-sbfail")
        let key = try Scenarios.keyA()
        let app = try Scenarios.app(key: key)
        let state = try ws.device("dev")
        try store(state, [(0x1000, try Scenarios.signedBootloader(key: key)), (0x10000, try Scenarios.table()),
                          (0x60000, app), (0x210000, app)])
        // Secure Boot V2 only (no flash encryption): the first boot burns the digest of key A.
        let sdk = try ws.file("sdkconfig", text: "CONFIG_SECURE_BOOT=y\nCONFIG_SECURE_BOOT_V2_ENABLED=y\nCONFIG_PARTITION_TABLE_OFFSET=0x10000\n")
        let first = try deviceBoot(state, sdkconfig: sdk)
        #expect(first.booted && first.secureBootEnabled && !first.flashEncryptionEnabled)
        // Then a bootloader signed with key B is flashed: the ROM rejects it.
        try store(state, [(0x1000, try Scenarios.signedBootloader(key: try Scenarios.keyB()))])
        let (outcome, d) = try diagnose(ws, state, sdkconfig: nil)
        // The ECO3 ROM's recorded wording (golden/qemu-esp32/B3-sbv2-rom-untrusted).
        #expect(outcome.result == .romHalted && outcome.log.contains { $0.text == "secure boot verification failed" })
        #expect(outcome.log.contains { $0.text == "Sig block 0 signed with untrusted key" })
        #expect(d.rule == "DR004", "\(d)")
        #expect(d.cause == "Secure Boot is enabled and the ROM rejects the bootloader on flash")
    }
}
