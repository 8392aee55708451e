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

    /// The ESP32 demo's sdkconfig (``sdkconfig(for:)`` of ``DemoChip/esp32``).
    public static let sdkconfig: String = sdkconfig(for: DemoChip.esp32)

    /// The demo's sdkconfig for `chip`: Secure Boot V2, flash encryption in development mode,
    /// the partition table at 0x10000 (a bootloader with both features does not fit below
    /// 0x8000) and 4 MB flash; S3/C3 name their target first.
    public static func sdkconfig(for chip: DemoChip) -> String {
        chip.sdkconfigHead + """
            CONFIG_SECURE_BOOT=y
            CONFIG_SECURE_BOOT_V2_ENABLED=y
            CONFIG_SECURE_FLASH_ENC_ENABLED=y
            CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT=y
            CONFIG_PARTITION_TABLE_OFFSET=0x10000
            CONFIG_ESPTOOLPY_FLASHSIZE="4MB"

            """
    }

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

    /// elf2image's options for `chip`: its flash settings (4 MB) and revision range.
    public static func options(_ chip: DemoChip = .esp32) -> ImageBuildOptions {
        var o = ImageBuildOptions()
        o.flashMode = chip.flashMode
        o.flashFrequency = chip.flashFrequency
        o.flashSize = "4MB"
        o.minRevision = chip.imageMinRevision
        o.minRevisionFull = chip.imageMinRevisionFull
        o.maxRevisionFull = chip.imageMaxRevisionFull
        return o
    }

    /// The second-stage bootloader for `chip`. Like every ESP-IDF bootloader, its read-only data
    /// holds the banner's format text (the simulator, like espforge's ROM model, runs the
    /// bootloader model only for such images); S3/C3 bootloaders start their DRAM with the
    /// v5.x bootloader descriptor, as ESP-IDF v5.2+ builds do.
    public static func bootloader(_ chip: DemoChip = .esp32) throws -> [UInt8] {
        try ImageBuilder.elf2image(elf: bootloaderELF(chip), chip: chip.spec, options: options(chip))
    }

    /// The bootloader's ELF file (what elf2image turns into ``bootloader(_:)``).
    public static func bootloaderELF(_ chip: DemoChip = .esp32) -> [UInt8] {
        elf32(entry: chip.bootloaderEntry, sections: sections(chip.bootloaderSections, codeSize: 0),
              machine: chip.elfMachine, flags: chip.elfFlags)
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

    /// The app for `chip`, padded for Secure Boot V2 signing, with `codeSize` bytes of code.
    public static func app(_ chip: DemoChip = .esp32, codeSize: Int = 96 * 1024) throws -> [UInt8] {
        var o = options(chip)
        o.securePadV2 = true
        return try ImageBuilder.elf2image(elf: appELF(chip, codeSize: codeSize), chip: chip.spec, options: o)
    }

    /// The app's ELF file (what elf2image with `--secure-pad-v2` turns into ``app(_:codeSize:)``).
    public static func appELF(_ chip: DemoChip = .esp32, codeSize: Int = 96 * 1024) -> [UInt8] {
        elf32(entry: chip.appEntry, sections: sections(chip.appSections, codeSize: codeSize),
              machine: chip.elfMachine, flags: chip.elfFlags)
    }

    /// `esp_app_desc_t`: magic, version, project name, compile time and date, IDF version, and
    /// the MMU page size (log2, 64 KiB).
    public static func appDescriptor() -> [UInt8] {
        var desc = [UInt8](repeating: 0, count: 256)
        func put(_ text: String, at offset: Int) { for (i, b) in text.utf8.enumerated() { desc[offset + i] = b } }
        for (i, b) in [0x32, 0x54, 0xCD, 0xAB].enumerated() { desc[i] = UInt8(b) }   // magic 0xABCD5432 LE
        put("v1.0.0", at: 16)
        put("espforge-demo", at: 48)
        put("12:00:00", at: 80)
        put("Nov 25 2026", at: 96)
        put("v5.2-demo", at: 112)
        desc[180] = 16
        return desc
    }

    /// `esp_bootloader_desc_t`: magic byte 0x50, version 1, IDF version and compile date/time.
    public static func bootloaderDescriptor() -> [UInt8] {
        var desc = [UInt8](repeating: 0, count: BootloaderDescriptor.size)
        func put(_ text: String, at offset: Int) { for (i, b) in text.utf8.enumerated() { desc[offset + i] = b } }
        desc[0] = BootloaderDescriptor.magicByte
        desc[4] = 1
        put("v5.2-demo", at: 8)
        put("Nov 25 2026 12:00:00", at: 40)
        return desc
    }

    /// The ELF sections of a table row, contents generated, addresses resolved (`codeSize`: the
    /// length of the `.code` section).
    public static func sections(_ rows: [DemoChip.Section], codeSize: Int) -> [Section] {
        // The 64 KiB pages `.flash.text` spans from its page start (S3/C3 data follows them).
        let textPages: UInt32 = rows.first { if case .code = $0.content { true } else { false } }.map { row in
            let start: UInt32
            switch row.placement { case .at(let a), .afterFlashText(let a): start = a }
            return (UInt32(start & 0xFFFF) + UInt32(codeSize) + 0xFFFF) & ~0xFFFF
        } ?? 0
        return rows.map { row in
            let address: UInt32
            switch row.placement {
            case .at(let a): address = a
            case .afterFlashText(let a): address = a + textPages
            }
            let data: [UInt8]
            switch row.content {
            case .banner(let size, let seed):
                let banner = Array("ESP-IDF %s 2nd stage bootloader\0".utf8)
                data = banner + filler(size - banner.count, seed: seed)
            case .filler(let count, let seed): data = filler(count, seed: seed)
            case .code(let seed): data = code(codeSize, seed: seed)
            case .appDescriptor: data = appDescriptor()
            case .bootloaderDescriptor: data = bootloaderDescriptor()
            }
            return Section(name: row.name, address: address, data: data, flags: row.flags)
        }
    }

    /// A minimal ELF32 little-endian file (`machine` 94 Xtensa, 243 RISC-V; `flags` is `e_flags`):
    /// header, section data, .shstrtab, section headers.
    public static func elf32(entry: UInt32, sections: [Section], machine: UInt16 = 94, flags: UInt32 = 0) -> [UInt8] {
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
        u16(2); u16(machine); u32(1); u32(entry); u32(0); u32(shoff); u32(flags)
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
