import ImageFormat

/// The demo's synthetic firmware: small ELF files built in memory (the layout of an ESP-IDF
/// bootloader and app, random bytes as code), turned into ESP images by elf2image.
public enum DemoFirmware {
    public static let partitionCSV = """
        nvs_key,  data, nvs_keys, 0x11000,  0x1000, encrypted
        nvs,      data, nvs,      0x12000,  0x20000
        otadata,  data, ota,      0x32000,  0x2000
        phy_init, data, phy,      0x34000,  0x1000
        coredump, data, coredump, 0x35000,  0x20000
        ota_0,    app,  ota_0,    0x60000,  0x1a0000
        ota_1,    app,  ota_1,    0x210000, 0x1a0000
        """

    public static let sdkconfig = """
        CONFIG_SECURE_BOOT=y
        CONFIG_SECURE_BOOT_V2_ENABLED=y
        CONFIG_SECURE_FLASH_ENC_ENABLED=y
        CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT=y
        CONFIG_PARTITION_TABLE_OFFSET=0x10000
        CONFIG_ESPTOOLPY_FLASHSIZE="4MB"

        """

    public static let nvsConfig = """
        key,type,encoding,value
        device,namespace,,
        serial_no,data,string,
        hw_rev,data,u8,
        model,data,string,espforge-demo

        """

    /// One ELF section: name, load address, contents and `sh_flags`.
    public struct Section: Sendable {
        public var name: String; public var address: UInt32; public var data: [UInt8]; public var flags: UInt32
        public init(name: String, address: UInt32, data: [UInt8], flags: UInt32) {
            self.name = name; self.address = address; self.data = data; self.flags = flags
        }
    }

    /// Deterministic filler bytes (xorshift).
    public static func filler(_ count: Int, seed: UInt64) -> [UInt8] {
        var s = seed | 1
        return (0..<count).map { _ in s ^= s << 13; s ^= s >> 7; s ^= s << 17; return UInt8(truncatingIfNeeded: s) }
    }

    public static func options() -> ImageBuildOptions {
        var o = ImageBuildOptions()
        o.flashMode = "dio"
        o.flashFrequency = "40m"
        o.flashSize = "4MB"
        return o
    }

    public static func bootloader() throws -> [UInt8] {
        // Like every ESP-IDF bootloader, its read-only data holds the banner's format text (the
        // simulator, like espforge's ROM model, runs the bootloader model only for such images).
        let banner = Array("ESP-IDF %s 2nd stage bootloader\0".utf8)
        let rodata = banner + filler(2048 - banner.count, seed: 11)
        let elf = elf32(entry: 0x4007_8000, sections: [
            Section(name: ".dram0.rodata", address: 0x3FFF_0000, data: rodata, flags: 3),
            Section(name: ".iram_loader.text", address: 0x4007_8000, data: filler(8192, seed: 12), flags: 6),
            Section(name: ".iram.text", address: 0x4007_C000, data: filler(4096, seed: 13), flags: 6),
        ])
        return try ImageBuilder.elf2image(elf: elf, chip: .esp32, options: options())
    }

    /// Code-like filler: 3-byte "instructions" from a vocabulary of 512, so it compresses about
    /// as well as real Xtensa code (roughly to 60 %), unlike random bytes.
    public static func code(_ count: Int, seed: UInt64) -> [UInt8] {
        let vocabulary = filler(3 * 512, seed: seed)
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var out: [UInt8] = []
        out.reserveCapacity(count + 3)
        while out.count < count {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            let i = Int(s % 512) * 3
            out += vocabulary[i..<(i + 3)]
        }
        return Array(out.prefix(count))
    }

    public static func app(codeSize: Int = 96 * 1024) throws -> [UInt8] {
        var desc = [UInt8](repeating: 0, count: 256)
        func put(_ text: String, at offset: Int) { for (i, b) in text.utf8.enumerated() { desc[offset + i] = b } }
        for (i, b) in [0x32, 0x54, 0xCD, 0xAB].enumerated() { desc[i] = UInt8(b) }   // magic 0xABCD5432 LE
        put("v1.0.0", at: 16)
        put("espforge-demo", at: 48)
        put("12:00:00", at: 80)
        put("Nov 25 2026", at: 96)
        put("v5.2-demo", at: 112)
        desc[180] = 16
        let elf = elf32(entry: 0x4008_0000, sections: [
            Section(name: ".flash.appdesc", address: 0x3F40_0020, data: desc, flags: 2),
            Section(name: ".flash.rodata", address: 0x3F40_0120, data: filler(24 * 1024, seed: 21), flags: 2),
            Section(name: ".dram0.data", address: 0x3FFB_0000, data: filler(4 * 1024, seed: 22), flags: 3),
            Section(name: ".iram0.text", address: 0x4008_0000, data: filler(12 * 1024, seed: 23), flags: 6),
            Section(name: ".flash.text", address: 0x400D_0020, data: code(codeSize, seed: 24), flags: 6),
        ])
        var o = options()
        o.securePadV2 = true
        return try ImageBuilder.elf2image(elf: elf, chip: .esp32, options: o)
    }

    /// A minimal ELF32 little-endian Xtensa file: header, section data, .shstrtab, section headers.
    public static func elf32(entry: UInt32, sections: [Section]) -> [UInt8] {
        var names: [UInt8] = [0]
        var nameOffsets: [UInt32] = []
        for s in sections { nameOffsets.append(UInt32(names.count)); names += Array(s.name.utf8) + [0] }
        let shstrtabName = UInt32(names.count)
        names += Array(".shstrtab".utf8) + [0]

        var body: [UInt8] = []
        var offsets: [UInt32] = []
        for s in sections { offsets.append(UInt32(52 + body.count)); body += s.data }
        let strtabOffset = UInt32(52 + body.count)
        body += names
        while (52 + body.count) % 4 != 0 { body.append(0) }
        let shoff = UInt32(52 + body.count)

        var out: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 1, 1, 1] + [UInt8](repeating: 0, count: 9)
        func u16(_ v: UInt16) { out += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func u32(_ v: UInt32) { for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
        u16(2); u16(94); u32(1); u32(entry); u32(0); u32(shoff); u32(0)
        u16(52); u16(0); u16(0); u16(40); u16(UInt16(sections.count + 2)); u16(UInt16(sections.count + 1))
        out += body
        for _ in 0..<10 { u32(0) }   // null section
        for (i, s) in sections.enumerated() {
            u32(nameOffsets[i]); u32(1); u32(s.flags); u32(s.address); u32(offsets[i]); u32(UInt32(s.data.count))
            u32(0); u32(0); u32(4); u32(0)
        }
        u32(shstrtabName); u32(3); u32(0); u32(0); u32(strtabOffset); u32(UInt32(names.count)); u32(0); u32(0); u32(1); u32(0)
        return out
    }
}
