import ESPCore
import Foundation
import Manifest
import Partitions
import SecureBoot
import VirtualDevice

/// `espforge demo` as a library call: a folder holding a whole line for N virtual ESP32s,
/// ESP32-S3s or ESP32-C3s (a throwaway signing key, firmware synthesized for the chip
/// (``DemoChip``), partition table, sdkconfig, per-device NVS values, a manifest and the device
/// folders), ready for ``ProvisionSetup/load(manifestPath:tokenSigner:escrowKey:)``.
///
///     let demo = try DemoLine.Options(devices: 2, dir: "out")
///     try DemoLine.prepare(demo)
///     let line = try DemoLine.create(demo)
///     let results = try await ProvisionSetup.provision(try ProvisionSetup.load(manifestPath: line.manifestPath),
///                                                      ports: line.ports, options: .init())
///
/// Nothing here prints.
public enum DemoLine {
    /// What to create (checked by ``init(devices:dir:mode:appSize:chip:)``).
    public struct Options: Sendable {
        /// The chip of the line (``DemoChip/all``).
        public var chip: DemoChip
        public var devices: Int
        public var dir: String
        public var mode: Manifest.FlashEncryptionMode
        /// Size of the synthesized app's code.
        public var codeSize: Int

        /// Checks the counts as the command line gives them: 1…64 devices, mode `host` or
        /// `on-chip`, an app size from 4K to 1536K (it must fit the 1.6 MB ota_0 partition), a chip
        /// the demo offers (`esp32`, `esp32s3`, `esp32c3`).
        public init(devices: Int, dir: String, mode: String = "host", appSize: String = "96K", chip: String = "esp32") throws {
            guard let demoChip = DemoChip.named(chip) else {
                throw UsageError("--chip '\(chip)' is not a chip the demo offers",
                                 hint: "use one of " + DemoChip.all.map(\.spec.name).joined(separator: ", "))
            }
            guard (1...64).contains(devices) else { throw UsageError("--devices must be 1…64") }
            guard mode == "host" || mode == "on-chip" else { throw UsageError("--mode must be host or on-chip") }
            guard let codeSize = NumberParsing.size(appSize), codeSize >= 4096, codeSize <= 1_536 * 1024 else {
                throw UsageError("--app-size '\(appSize)' is not a size from 4K to 1536K", hint: "e.g. --app-size 1MB")
            }
            self.devices = devices
            self.dir = dir
            self.mode = mode == "host" ? .host : .onChip
            self.codeSize = codeSize
            self.chip = demoChip
        }
    }

    /// What ``create(_:)`` wrote.
    public struct Created: Sendable {
        /// The generated manifest (`DIR/espforge.toml`).
        public var manifestPath: String
        /// `virtual:DIR/devices/devN`, one per device, in order.
        public var ports: [String]
        /// The device folders, in order.
        public var deviceFolders: [String]
    }

    /// Makes the folder ready: creates it, or removes exactly what an earlier demo wrote there
    /// (``DemoFolder``); a folder with other files is refused.
    public static func prepare(_ options: Options) throws {
        try DemoFolder(dir: options.dir).prepare(devices: options.devices)
    }

    /// Writes the key, images, sdkconfig, NVS files, manifest and virtual devices into the
    /// prepared folder.
    public static func create(_ options: Options) throws -> Created {
        let dir = options.dir
        func write(_ bytes: [UInt8], _ name: String, secret: Bool = false) throws {
            try AtomicFile.write(bytes, to: dir + "/" + name, mode: secret ? AtomicFile.secretMode : AtomicFile.publicMode)
        }
        func write(_ text: String, _ name: String) throws { try write(Array(text.utf8), name) }
        let key = try SigningKey.generate(.rsa3072)
        try write(Array(key.pemRepresentation.utf8), "signing_key.pem", secret: true)
        let chip = options.chip
        let bootloader = try DemoFirmware.bootloader(chip)
        let app = try DemoFirmware.app(chip, codeSize: options.codeSize)
        let table = try partitionTable(chip, bootloaderSize: bootloader.count)
        try write(bootloader, "bootloader.bin")
        try write(app, "app.bin")
        try write(table, "partition-table.bin")
        try write(DemoFirmware.partitionCSV + "\n", "partitions.csv")
        try write(DemoFirmware.sdkconfig(for: chip), "sdkconfig")
        try write(DemoFirmware.nvsConfig, "nvs-config.csv")
        try write(valuesCSV(devices: options.devices), "nvs-values.csv")
        try write(manifest(mode: options.mode, chip: chip).toml(header: [DemoFolder.generatedManifestMarker]), "espforge.toml")

        var created = Created(manifestPath: dir + "/espforge.toml", ports: [], deviceFolders: [])
        for i in 0..<options.devices {
            let state = dir + "/devices/dev\(i + 1)"
            let device = try Device.create(try deviceDescription(chip, index: i, state: state))
            try DeviceStore(directory: state).create(device, force: true)
            // Remembered by `espforge device boot --state` and `preflight --simulate`.
            try AtomicFile.write(Array(DemoFirmware.sdkconfig(for: chip).utf8), to: state + "/sdkconfig", mode: AtomicFile.publicMode)
            created.deviceFolders.append(state)
            created.ports.append("virtual:" + state)
        }
        return created
    }

    /// The per-device values: serial numbers SN001001, SN001002, … and hardware revision 3.
    public static func valuesCSV(devices: Int) -> String {
        var values = "serial,serial_no,hw_rev\n"
        for i in 0..<devices { values += String(format: "SN%06d,SN%06d,3\n", 1001 + i, 1001 + i) }
        return values
    }

    /// The demo's partition table for `chip` (at 0x10000, checked against 4 MB of flash and the
    /// bootloader's size at the chip's bootloader offset).
    public static func partitionTable(_ chip: DemoChip, bootloaderSize: Int? = nil) throws -> [UInt8] {
        var o = PartitionTableOptions(tableOffset: tableOffset, chip: chip.spec, flashSize: 4 << 20)
        o.bootloaderSize = bootloaderSize
        return try PartitionTableBuild(csv: DemoFirmware.partitionCSV, options: o).binary
    }

    /// Where the demo's partition table is (CONFIG_PARTITION_TABLE_OFFSET).
    public static let tableOffset = 0x10000

    /// Device `index` (from 0) of a demo line: the chip's factory revision, package and MAC
    /// prefix (an ESP32 rev 3, 24:0a:c4:…), 4 MB Winbond flash, a MAC derived from the index.
    public static func deviceDescription(_ chip: DemoChip, index: Int, state: String) throws -> DeviceDescription {
        let oui = VirtualChip.named(chip.spec.name)?.macOUI ?? [0x24, 0x0A, 0xC4]
        return try DeviceReports.description(chip: chip.spec.name, flashSize: "4MB", chipRevision: nil,
                                             mac: Device.defaultMAC(seed: UInt64(index + 1) &* 7919, oui: oui),
                                             flashID: nil, statePath: state)
    }

    /// `N virtual ESP32 rev 3 (4MB)`, `N virtual ESP32-S3 rev v0.2 (4MB)`: what the demo makes.
    public static func headline(_ options: Options) -> String {
        var rev = "?"
        if let d = try? deviceDescription(options.chip, index: 0, state: options.dir) {
            rev = d.minorRevision.map { "v\(d.chipRevision).\($0)" } ?? "\(d.chipRevision)"
        }
        return "\(options.devices) virtual \(options.chip.spec.displayName) rev \(rev) (4MB)"
    }

    /// The demo's manifest (paths relative to the demo folder).
    public static func manifest(mode: Manifest.FlashEncryptionMode, chip: DemoChip = .esp32) -> Manifest {
        Manifest(
            chip: .init(type: chip.spec.name, minRevision: chip.manifestMinRevision, flashSize: 4 << 20,
                        flashMode: chip.flashMode, flashFreq: chip.flashFrequency),
            images: .init(bootloader: .init(path: "bootloader.bin", offset: chip.spec.bootloaderOffset),
                          partitionTable: .init(path: "partition-table.bin", offset: tableOffset),
                          app: .init(path: "app.bin", offset: 0x60000)),
            partitionsCSV: "partitions.csv",
            signing: .key(path: "signing_key.pem"),
            flashEncryption: .init(mode: mode, release: false),
            nvs: .init(config: "nvs-config.csv", values: "nvs-values.csv", partition: "nvs", encrypt: true, keysPartition: "nvs_key"),
            efuse: .init(burn: chip.finalBurn),
            registry: .init(url: "registry.sqlite", station: "demo"))
    }
}
