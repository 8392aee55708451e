import Foundation
import Testing
import TestSupport

/// `espforge flash write --encrypt` on a virtual chip: the key burned with `espforge efuse burn-key`
/// encrypts the data in the chip's engine, giving exactly espsecure's ciphertext; refused (PF012)
/// while flash encryption is off unless forced.
@Suite(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
struct EncryptedFlashTests {
    @Test func encryptedWriteEqualsEspsecure() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dir = try TestEnvironment.temporaryDirectory("espforge-encflash")
        defer { try? FileManager.default.removeItem(at: dir) }
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        func put(_ bytes: [UInt8], _ name: String) -> String {
            FileManager.default.createFile(atPath: path(name), contents: Data(bytes))
            return path(name)
        }
        func ok(_ args: [String]) throws {
            let r = try Espforge.run(args)
            #expect(r.status == 0, "seed \(seed): espforge \(args.joined(separator: " ")): \(r.err)")
        }
        try ok(["device", "create", "--state", path("dev")])
        let port = "virtual:" + path("dev")
        let key = put(rng.bytes(32), "fe.key")
        let data = put(rng.bytes(0x3000), "data.bin")
        try ok(["efuse", "burn-key", "--port", port, "flash_encryption", key, "--yes"])
        try ok(["efuse", "burn", "--port", port, "FLASH_CRYPT_CONFIG=0xF", "--yes"])

        let refused = try Espforge.run(["flash", "write", "--port", port, "--encrypt", "0x20000", data])
        #expect(refused.status == 1 && refused.err.contains("PF012"), "seed \(seed): \(refused.err)")

        try ok(["efuse", "burn", "--port", port, "FLASH_CRYPT_CNT=1", "--yes"])
        try ok(["flash", "write", "--port", port, "--encrypt", "0x20000", data])
        let r = try Oracle.run("espsecure", ["encrypt-flash-data", "--keyfile", key, "--address", "0x20000",
                                            "--flash-crypt-conf", "0xF", "--output", path("expected.bin"), data])
        #expect(r.status == 0, "\(r.err)")
        let expected = try #require(FileManager.default.contents(atPath: path("expected.bin")))
        let flash = try #require(FileManager.default.contents(atPath: path("dev") + "/flash.bin"))
        #expect([UInt8](flash[0x20000..<0x23000]) == [UInt8](expected), "seed \(seed)")
    }
}
