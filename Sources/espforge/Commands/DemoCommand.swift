import ArgumentParser
import ESPCore
import Foundation
import ProductionLine
import ImageFormat
import Manifest
import Partitions
import SecureBoot
import VirtualDevice

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Provision a tray of virtual ESP32s end to end, with nothing but espforge.",
        discussion: """
            Creates everything in --dir: N virtual ESP32 rev 3 devices with 4 MB flash, a throwaway \
            RSA-3072 signing key, the seed board's partition table, a bootloader and an app that \
            espforge synthesizes in memory (not runnable firmware: valid images the boot simulator \
            loads), an sdkconfig with Secure Boot V2 and flash encryption, per-device NVS values \
            (serial numbers), a manifest and a SQLite registry. Then provisions all devices in \
            parallel (`espforge provision`) and prints the summary, the registry and how to inspect \
            a device. No hardware and no files are needed.

            Example:
              espforge demo --devices 4 --dir demo-out
            """
    )

    @Option(help: "How many virtual devices.")
    var devices: Int = 4

    @Option(help: "Folder for the devices, key, images, manifest and registry (an earlier demo's files in it are replaced; other files stay).")
    var dir: String = "demo-out"

    @Option(help: "Flash encryption mode: host or on-chip.")
    var mode: String = "host"

    @Option(name: .customLong("app-size"), help: "Size of the synthesized app's code, e.g. 96K or 1MB (it must fit the 1.6 MB ota_0 partition).")
    var appSize: String = "96K"

    @Flag(help: "Hold each device's result until its virtual provisioning time (flash writes and first boot, time model) has passed in real time.")
    var realtime = false

    @Flag(help: "One JSON event per line.")
    var json = false

    func run() async throws {
        guard (1...64).contains(devices) else { throw UsageError("--devices must be 1…64") }
        guard mode == "host" || mode == "on-chip" else { throw UsageError("--mode must be host or on-chip") }
        guard let codeSize = NumberParsing.size(appSize), codeSize >= 4096, codeSize <= 1_536 * 1024 else {
            throw UsageError("--app-size '\(appSize)' is not a size from 4K to 1536K", hint: "e.g. --app-size 1MB")
        }
        // Only what a demo wrote is replaced (see DemoFolder); unrelated files stay.
        try DemoFolder(dir: dir).prepare(devices: devices)
        // Same channel as the provisioning progress lines (unbuffered), so the order holds.
        let say: (String) -> Void = { text in if !json { FileHandle.standardOutput.write(Data((text + "\n").utf8)) } }

        say("espforge demo: \(devices) virtual ESP32 rev 3 (4MB) in \(dir)/")
        let key = try SigningKey.generate(.rsa3072)
        try FileIO.write(Array(key.pemRepresentation.utf8), to: dir + "/signing_key.pem", secret: true)
        let bootloader = try DemoFirmware.bootloader()
        let app = try DemoFirmware.app(codeSize: codeSize)
        let table = try PartitionTableBuild(csv: DemoFirmware.partitionCSV,
                                            options: PartitionTableOptions(tableOffset: 0x10000, chip: .esp32, flashSize: 4 << 20)).binary
        try FileIO.write(bootloader, to: dir + "/bootloader.bin")
        try FileIO.write(app, to: dir + "/app.bin")
        try FileIO.write(table, to: dir + "/partition-table.bin")
        try FileIO.write(DemoFirmware.partitionCSV + "\n", to: dir + "/partitions.csv")
        try FileIO.write(DemoFirmware.sdkconfig, to: dir + "/sdkconfig")
        try FileIO.write(DemoFirmware.nvsConfig, to: dir + "/nvs-config.csv")
        var values = "serial,serial_no,hw_rev\n"
        for i in 0..<devices { values += String(format: "SN%06d,SN%06d,3\n", 1001 + i, 1001 + i) }
        try FileIO.write(values, to: dir + "/nvs-values.csv")
        let manifest = Manifest(
            chip: .init(type: "esp32", minRevision: 3, flashSize: 4 << 20, flashMode: "dio", flashFreq: "40m"),
            images: .init(bootloader: .init(path: "bootloader.bin", offset: 0x1000),
                          partitionTable: .init(path: "partition-table.bin", offset: 0x10000),
                          app: .init(path: "app.bin", offset: 0x60000)),
            partitionsCSV: "partitions.csv",
            signing: .key(path: "signing_key.pem"),
            flashEncryption: .init(mode: mode == "host" ? .host : .onChip, release: false),
            nvs: .init(config: "nvs-config.csv", values: "nvs-values.csv", partition: "nvs", encrypt: true, keysPartition: "nvs_key"),
            efuse: .init(burn: ["JTAG_DISABLE", "DISABLE_DL_DECRYPT", "DISABLE_DL_CACHE"]),
            registry: .init(url: "registry.sqlite", station: "demo"))
        try FileIO.write(manifest.toml(header: ["espforge demo manifest (generated)"]), to: dir + "/espforge.toml")

        var ports: [String] = []
        for i in 0..<devices {
            let state = dir + "/devices/dev\(i + 1)"
            let device = try Device.create(DeviceDescription(mac: Device.defaultMAC(seed: UInt64(i + 1) &* 7919)))
            try DeviceStore(directory: state).create(device, force: true)
            // Remembered by `espforge device boot --state` and `preflight --simulate`.
            try FileIO.write(DemoFirmware.sdkconfig, to: state + "/sdkconfig")
            ports.append("virtual:" + state)
        }
        say("  key: \(dir)/signing_key.pem (throwaway RSA-3072)  images: bootloader.bin, partition-table.bin, app.bin")
        say("  manifest: \(dir)/espforge.toml (flash encryption \(mode), Secure Boot V2)\n")

        let loaded = try ProvisionSetup.load(manifestPath: dir + "/espforge.toml")
        let code = try await ProvisionRun.run(loaded, ports: ports, registryURL: loaded.registryURL, resume: false,
                                                json: json, realtime: realtime)
        say("""

            registry: \(loaded.registryURL ?? "?")   (espforge registry list --registry \(loaded.registryURL ?? "?"))
            inspect a device:
              espforge device inspect --state \(dir)/devices/dev1
              espforge device boot --state \(dir)/devices/dev1
            """)
        if code != 0 { throw ExitCode(code) }
    }
}

/// The demo's synthetic firmware: small ELF files built in memory (the layout of an ESP-IDF
/// bootloader and app, random bytes as code), turned into ESP images by elf2image.
enum DemoFirmware {
    static let partitionCSV = """
        nvs_key,  data, nvs_keys, 0x11000,  0x1000, encrypted
        nvs,      data, nvs,      0x12000,  0x20000
        otadata,  data, ota,      0x32000,  0x2000
        phy_init, data, phy,      0x34000,  0x1000
        coredump, data, coredump, 0x35000,  0x20000
        ota_0,    app,  ota_0,    0x60000,  0x1a0000
        ota_1,    app,  ota_1,    0x210000, 0x1a0000
        """

    static let sdkconfig = """
        CONFIG_SECURE_BOOT=y
        CONFIG_SECURE_BOOT_V2_ENABLED=y
        CONFIG_SECURE_FLASH_ENC_ENABLED=y
        CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT=y
        CONFIG_PARTITION_TABLE_OFFSET=0x10000
        CONFIG_ESPTOOLPY_FLASHSIZE="4MB"

        """

    static let nvsConfig = """
        key,type,encoding,value
        device,namespace,,
        serial_no,data,string,
        hw_rev,data,u8,
        model,data,string,espforge-demo

        """

    struct Section { var name: String; var address: UInt32; var data: [UInt8]; var flags: UInt32 }

    /// Deterministic filler bytes (xorshift).
    static func filler(_ count: Int, seed: UInt64) -> [UInt8] {
        var s = seed | 1
        return (0..<count).map { _ in s ^= s << 13; s ^= s >> 7; s ^= s << 17; return UInt8(truncatingIfNeeded: s) }
    }

    static func options() -> ImageBuildOptions {
        var o = ImageBuildOptions()
        o.flashMode = "dio"
        o.flashFrequency = "40m"
        o.flashSize = "4MB"
        return o
    }

    static func bootloader() throws -> [UInt8] {
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
    static func code(_ count: Int, seed: UInt64) -> [UInt8] {
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

    static func app(codeSize: Int = 96 * 1024) throws -> [UInt8] {
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
    static func elf32(entry: UInt32, sections: [Section]) -> [UInt8] {
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
