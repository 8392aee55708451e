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
        guard address % 16 == 0, plaintext.count % 16 == 0,
              let cipher = ESP32FlashKey.cipher(efuses, blankIsNone: false)
        else { return nil }
        return try? cipher.encrypt(plaintext, at: address)
    }
}

/// The ESP32 flash-encryption key as the chip's engine sees it: BLOCK1's cells hold the key file
/// byte-reversed (as espefuse burns it); read protection hides them from software, not from the
/// engine. The one place that turns BLOCK1 into a key or a cipher.
public enum ESP32FlashKey {
    /// BLOCK1 in key-file byte order; nil when BLOCK1 is blank (no key burned).
    public static func key(_ efuses: EFuseArray) -> [UInt8]? {
        guard efuses.blocks.count > 1, efuses.blocks[1].contains(where: { $0 != 0 }) else { return nil }
        return cells(efuses)
    }

    /// FLASH_CRYPT_CONFIG (the key tweak) from the cells.
    public static func cryptConfig(_ efuses: EFuseArray) -> Int {
        let layout = EFuseLayout.esp32
        guard let f = layout.field(named: "FLASH_CRYPT_CONFIG") else { return 0xF }
        return Int(efuses.value(of: f, layout: layout, raw: true).prefix(8).loadLE(UInt64.self))
    }

    /// The engine's cipher (key from BLOCK1, tweak from FLASH_CRYPT_CONFIG). `blankIsNone`: nil
    /// for a blank BLOCK1; false: a blank block is the all-zero key, as the engine would use it.
    public static func cipher(_ efuses: EFuseArray, blankIsNone: Bool = true) -> FlashCipher? {
        guard efuses.blocks.count > 1 else { return nil }
        let bytes = blankIsNone ? key(efuses) : cells(efuses)
        guard let bytes else { return nil }
        return try? FlashCipher(chip: .esp32, key: bytes, flashCryptConfig: cryptConfig(efuses))
    }

    static func cells(_ efuses: EFuseArray) -> [UInt8] {
        var bytes: [UInt8] = []
        for word in efuses.blocks[1] { bytes.appendLE(word) }
        return bytes.reversed()
    }
}
