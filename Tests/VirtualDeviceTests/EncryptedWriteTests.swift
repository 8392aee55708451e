import Foundation
import Testing
import TestSupport

/// Encrypted writes (`write-flash --encrypt`) go through the virtual chip's flash encryption
/// engine: the key burned in BLOCK1 by the real espefuse and FLASH_CRYPT_CONFIG give exactly the
/// ciphertext espsecure computes on the host; with DISABLE_DL_ENCRYPT burned they fail as on a chip.
@Suite(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
struct EncryptedWriteTests {
    @Test func esptoolEncryptedWriteMatchesEspsecure() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dev = try ServedDevice(mac: randomMAC(&rng))
        let keyPath = try dev.writeTemp(rng.bytes(32), "fe.key")
        let data = rng.bytes(0x2000)
        let dataPath = try dev.writeTemp(data, "data.bin")
        try dev.start()
        expectOK(try dev.espefuse(["--do-not-confirm", "burn-key", "flash_encryption", keyPath]), "burn-key", seed)
        expectOK(try dev.espefuse(["--do-not-confirm", "burn-efuse", "FLASH_CRYPT_CONFIG", "0xF"]), "burn-efuse", seed)
        expectOK(try dev.esptool(["write-flash", "--encrypt", "0x20000", dataPath], stub: true), "write-flash --encrypt", seed)

        let expectedPath = dev.root.appendingPathComponent("expected.bin").path
        expectOK(try Oracle.run("espsecure", ["encrypt-flash-data", "--keyfile", keyPath, "--address", "0x20000",
                                               "--flash-crypt-conf", "0xF", "--output", expectedPath, dataPath]),
                 "espsecure encrypt-flash-data", seed)
        let expected = [UInt8](try Data(contentsOf: URL(fileURLWithPath: expectedPath)))
        dev.stop()
        let flash = try dev.flash()
        #expect(Array(flash[0x20000..<0x22000]) == expected, "seed \(seed): ciphertext differs from espsecure's")

        // With download-mode encryption disabled, the engine is off: the write fails.
        try dev.start()
        expectOK(try dev.espefuse(["--do-not-confirm", "burn-efuse", "DISABLE_DL_ENCRYPT", "1"]), "burn-efuse", seed)
        let refused = try dev.esptool(["write-flash", "--encrypt", "0x30000", dataPath], stub: true)
        #expect(refused.status != 0, "seed \(seed): encrypted write succeeded with DISABLE_DL_ENCRYPT burned")
        dev.stop()
        #expect(try dev.flash()[0x30000..<0x32000].allSatisfy { $0 == 0xFF }, "seed \(seed): nothing written")
    }
}
