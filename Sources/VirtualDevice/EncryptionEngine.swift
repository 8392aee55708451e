import EFuse
import ESPCore
import FlashEncryption

/// The ESP32's flash encryption engine as encrypted writes (`write-flash --encrypt`) see it: the
/// key comes from the BLOCK1 cells (which hold the key file byte-reversed, as espefuse burns it;
/// read protection hides it from software, not from the engine) and the key tweak from
/// FLASH_CRYPT_CONFIG. With DISABLE_DL_ENCRYPT burned the engine is off in download mode and the
/// write fails, as on the chip.
public enum VirtualEncryptionEngine {
    public static let esp32: @Sendable (EFuseArray, Int, [UInt8]) -> [UInt8]? = { efuses, address, plaintext in
        let layout = EFuseLayout.esp32
        func raw(_ name: String) -> UInt64 {
            guard let f = layout.field(named: name) else { return 0 }
            return efuses.value(of: f, layout: layout, raw: true).prefix(8).loadLE(UInt64.self)
        }
        guard raw("DISABLE_DL_ENCRYPT") == 0, efuses.blocks.count > 1 else { return nil }
        var key: [UInt8] = []
        for word in efuses.blocks[1] { key.appendLE(word) }
        guard address % 16 == 0, plaintext.count % 16 == 0,
              let cipher = try? FlashCipher(chip: .esp32, key: Array(key.reversed()),
                                            flashCryptConfig: Int(raw("FLASH_CRYPT_CONFIG")))
        else { return nil }
        return try? cipher.encrypt(plaintext, at: address)
    }
}
