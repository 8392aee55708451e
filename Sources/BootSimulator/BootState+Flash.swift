import ESPCore
import FlashEncryption
import VirtualDevice

/// Flash as the ROM and the bootloader see it: reads through the cache (decrypted when flash
/// encryption is on), erase + program, in-place encryption of a region.
extension BootState {
    /// The cipher the flash encryption engine uses (key from BLK1 cells, tweak from FLASH_CRYPT_CONFIG).
    mutating func cipher() -> FlashCipher? {
        if let vc = chip.fieldMap { return xtsCipher(vc) }
        let key = blockRaw(1)
        let conf = Int(raw("FLASH_CRYPT_CONFIG"))
        if let c = cipherCache, c.key == key, c.config == conf { return c.cipher }
        guard let c = ESP32FlashKey.cipher(device.efuses, blankIsNone: false) else { return nil }
        cipherCache = (key, conf, c)
        return c
    }

    /// S3/C3: the XTS-AES engine keyed from the block with purpose XTS_AES_128_KEY (or the S3's
    /// XTS_AES_256_KEY_1/_2 pair), as the hardware reads it (read protection does not apply).
    private mutating func xtsCipher(_ vc: VirtualChip) -> FlashCipher? {
        guard let key = vc.flashEncryptionKey(cells) else { return nil }
        var words: [UInt32] = []
        for i in stride(from: 0, to: key.count, by: 4) { words.append(key[i..<(i + 4)].loadLE(UInt32.self)) }
        if let c = cipherCache, c.key == words, c.config == -1 { return c.cipher }
        guard let spec = ChipSpec.named(vc.name), let c = try? FlashCipher(chip: spec, key: key) else { return nil }
        cipherCache = (words, -1, c)
        return c
    }

    /// Reads flash as the cache / ROM sees it: decrypted when flash encryption is on.
    mutating func read(_ address: Int, _ length: Int, decrypt: Bool = true) -> [UInt8]? {
        guard length >= 0, address >= 0, let raw = device.flash.read(address, length) else { return nil }
        clock += config.timing.flashRead(bytes: length)
        guard decrypt, flashEncryptionEnabled, length > 0 else { return raw }
        let start = address & ~31
        let end = (address + length + 31) & ~31
        guard end <= device.flash.size, let block = device.flash.read(start, end - start),
              let c = cipher(), let plain = try? c.decrypt(block, at: start) else { return raw }
        return Array(plain[(address - start)..<(address - start + length)])
    }

    /// `read` without advancing the virtual clock (a second look at data already read).
    mutating func readQuiet(_ address: Int, _ length: Int) -> [UInt8]? {
        let saved = clock
        defer { clock = saved }
        return read(address, length)
    }

    /// Erases the sectors of [address, address+length) and programs `data` (encrypting it when
    /// `encrypt`).
    mutating func eraseAndWrite(_ address: Int, _ data: [UInt8], encrypt: Bool) {
        let t = config.timing
        let sectorStart = address & ~(NORFlash.sectorSize - 1)
        let sectorEnd = (address + data.count + NORFlash.sectorSize - 1) & ~(NORFlash.sectorSize - 1)
        if let dt = device.flash.eraseSectors(sectorStart, sectorEnd - sectorStart, timing: t) {
            clock += dt
            sectorErases += (sectorEnd - sectorStart) / NORFlash.sectorSize
        }
        var out = data
        if encrypt, let c = cipher(), address % 32 == 0, data.count % 32 == 0, let e = try? c.encrypt(data, at: address) {
            out = e
        }
        let before = device.flash.pagePrograms
        if let dt = device.flash.program(address, out, timing: t) { clock += dt }
        pagePrograms += device.flash.pagePrograms - before
    }

    /// esp_flash_encrypt_region: each 4 KiB sector read (plaintext), erased, written back encrypted.
    mutating func encryptRegion(name: String, _ address: Int, _ length: Int) {
        let sector = NORFlash.sectorSize
        var a = address & ~(sector - 1)
        let end = min(device.flash.size, address + length)
        while a < end {
            guard let plain = read(a, sector, decrypt: false) else { break }
            eraseAndWrite(a, plain, encrypt: true)
            a += sector
        }
        encrypted.append(EncryptedRegion(name: name, offset: address, length: length))
    }
}
