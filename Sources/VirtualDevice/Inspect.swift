import EFuse
import ESPCore
import Foundation

/// What the ROM sees at power-on. Later issues plug a first-boot simulator in through
/// ``PowerOnSimulator``; the built-in one only checks for a valid image header at 0x1000.
public struct PowerOnReport: Sendable, Equatable, Codable {
    public var bootMode: String
    public var bootloaderHeaderValid: Bool
    public var detail: String
    public var flashEncryptionEnabled: Bool
    public var secureBootEnabled: Bool

    public init(bootMode: String, bootloaderHeaderValid: Bool, detail: String, flashEncryptionEnabled: Bool,
                secureBootEnabled: Bool) {
        self.bootMode = bootMode
        self.bootloaderHeaderValid = bootloaderHeaderValid
        self.detail = detail
        self.flashEncryptionEnabled = flashEncryptionEnabled
        self.secureBootEnabled = secureBootEnabled
    }
}

public protocol PowerOnSimulator: Sendable {
    func powerOn(_ device: Device) -> PowerOnReport
}

/// The ROM's view only: is there an ESP image header at the bootloader offset?
public struct ROMPowerOn: PowerOnSimulator {
    public init() {}

    public func powerOn(_ device: Device) -> PowerOnReport {
        if let chip = device.chip { return DeviceInspector.fieldMapPowerOn(device, chip: chip) }
        let fe = DeviceInspector.flashEncryptionEnabled(device.efuses)
        let sb = DeviceInspector.secureBootEnabled(device.efuses, revision: device.description.chipRevision)
        let (ok, detail) = DeviceInspector.checkImageHeader(device.flash.read(0x1000, 24) ?? [])
        return PowerOnReport(bootMode: "SPI_FAST_FLASH_BOOT", bootloaderHeaderValid: ok,
                             detail: fe ? detail + " (flash is encrypted; the ROM decrypts before checking)" : detail,
                             flashEncryptionEnabled: fe, secureBootEnabled: sb)
    }
}

extension Device {
    /// Powers the device on with `simulator` (default: the ROM's header check).
    public func powerOn(using simulator: any PowerOnSimulator = ROMPowerOn()) -> PowerOnReport {
        simulator.powerOn(self)
    }
}

/// A human summary of a device: eFuses and a map of flash contents.
public enum DeviceInspector {
    public struct Region: Sendable, Equatable, Codable {
        public var start: Int
        public var end: Int
        public var kind: String
        public init(start: Int, end: Int, kind: String) {
            self.start = start
            self.end = end
            self.kind = kind
        }
    }

    public static func flashEncryptionEnabled(_ e: EFuseArray) -> Bool {
        ((e.rawWord(block: 0, word: 0) >> 20) & 0x7F).nonzeroBitCount % 2 == 1
    }

    public static func secureBootEnabled(_ e: EFuseArray, revision: Int) -> Bool {
        let w6 = e.rawWord(block: 0, word: 6)
        return w6 & 0x10 != 0 || (revision >= 3 && w6 & 0x20 != 0)
    }

    /// Checks an ESP image header (magic 0xE9, sane segment count, known SPI mode, ESP32 chip id).
    public static func checkImageHeader(_ h: [UInt8]) -> (Bool, String) {
        guard h.count >= 24 else { return (false, "flash too small for an image header") }
        if h.allSatisfy({ $0 == 0xFF }) { return (false, "no image at 0x1000 (erased flash)") }
        guard h[0] == 0xE9 else { return (false, "invalid header magic 0x\(String(h[0], radix: 16)) at 0x1000") }
        guard h[1] >= 1, h[1] <= 16 else { return (false, "invalid segment count \(h[1])") }
        guard h[2] <= 3 else { return (false, "invalid SPI mode \(h[2])") }
        let chipID = UInt16(h[12]) | UInt16(h[13]) << 8
        guard chipID == 0 else { return (false, "image is for chip id \(chipID), not ESP32") }
        let entry = h[4..<8].loadLE(UInt32.self)
        return (true, "valid image header at 0x1000: \(h[1]) segment(s), entry 0x\(String(entry, radix: 16))")
    }

    /// Splits flash into runs of 4 KiB sectors of one kind: erased, image, partition table,
    /// ciphertext-looking (high entropy), data.
    public static func flashMap(_ flash: NORFlash) -> [Region] {
        var regions: [Region] = []
        let sector = NORFlash.sectorSize
        var s = 0
        while s < flash.size {
            let bytes = flash.read(s, sector) ?? []
            var kind: String
            if bytes.allSatisfy({ $0 == 0xFF }) {
                kind = "erased"
            } else if bytes.first == 0xE9, checkImageHeader(Array(bytes.prefix(24))).0 {
                kind = "image"
            } else if bytes.count >= 2, bytes[0] == 0xAA, bytes[1] == 0x50 {
                kind = "partition table"
            } else if entropy(bytes) > 7.5 {
                kind = "high-entropy data (ciphertext or compressed)"
            } else {
                kind = "data"
            }
            // Data following an image header belongs to the image.
            if kind != "erased", kind != "image", kind != "partition table",
               let last = regions.last, last.kind == "image", last.end == s {
                kind = "image"
            }
            if let last = regions.last, last.kind == kind, last.end == s {
                regions[regions.count - 1].end = s + sector
            } else {
                regions.append(Region(start: s, end: s + sector, kind: kind))
            }
            s += sector
        }
        return regions
    }

    static func entropy(_ bytes: [UInt8]) -> Double {
        guard !bytes.isEmpty else { return 0 }
        var counts = [Int](repeating: 0, count: 256)
        for b in bytes { counts[Int(b)] += 1 }
        var h = 0.0
        for c in counts where c > 0 {
            let p = Double(c) / Double(bytes.count)
            h -= p * Foundation.log2(p)
        }
        return h
    }

    /// One entry per eFuse field, with its value as read through the registers.
    public struct FieldValue: Sendable, Codable, Equatable {
        public var name: String
        public var block: Int
        public var value: String
        public var writeProtected: Bool
        public var readProtected: Bool
        public var description: String
    }

    /// The device's eFuse fields: the ESP32 layout, or an S3/C3's field map as the read registers
    /// show it (secret key bytes are not shown).
    public static func fields(of device: Device) -> [FieldValue] {
        guard let chip = device.chip, let cells = device.cells else { return fields(device.efuses) }
        let shown = FieldMapController.readable(cells, map: chip.efuseMap)
        let summary = EFuseFieldMapSummary(words: shown, map: chip.efuseMap)
        return summary.fields.filter { $0.width > 0 }.map { f in
            FieldValue(name: f.name, block: f.block, value: f.value, writeProtected: !f.writeable,
                       readProtected: !f.readable, description: f.description)
        }
    }

    /// The S3/C3 ROM's view at power-on: the security state from the eFuses and an image header
    /// for this chip at 0x0 (the S3/C3 bootloader offset). No boot simulation.
    public static func fieldMapPowerOn(_ device: Device, chip: VirtualChip) -> PowerOnReport {
        let summary = EFuseFieldMapSummary(words: device.cells ?? EFuseBlockWords(map: chip.efuseMap), map: chip.efuseMap)
        let h = device.flash.read(0, 24) ?? []
        var ok = false, detail: String
        if h.count < 24 || h.allSatisfy({ $0 == 0xFF }) {
            detail = "no image at 0x0 (erased flash)"
        } else if summary.security.flashEncryptionEnabled {
            detail = "flash is encrypted; the ROM decrypts the bootloader at 0x0 before checking it"
        } else if h[0] != 0xE9 {
            detail = "invalid header magic 0x\(String(h[0], radix: 16)) at 0x0"
        } else {
            let id = UInt32(h[12]) | UInt32(h[13]) << 8
            ok = id == chip.chipID
            detail = ok ? "valid \(chip.displayName) image header at 0x0: \(h[1]) segment(s)"
                        : "image at 0x0 is for chip id \(id), not \(chip.displayName) (\(chip.chipID))"
        }
        return PowerOnReport(bootMode: "SPI_FAST_FLASH_BOOT", bootloaderHeaderValid: ok, detail: detail,
                             flashEncryptionEnabled: summary.security.flashEncryptionEnabled,
                             secureBootEnabled: summary.security.secureBootEnabled)
    }

    public static func fields(_ e: EFuseArray, layout: EFuseLayout = .esp32) -> [FieldValue] {
        layout.fields.map { f in
            let bytes = e.value(of: f, layout: layout)
            let value: String
            if f.name == "MAC" {
                value = MACAddress.format(e.esp32MAC())
            } else if f.width <= 32 {
                value = "0x" + String(e.integer(f, layout: layout), radix: 16)
            } else {
                value = bytes.hexString
            }
            let wp = f.writeProtect.map { e.isWriteProtected(bit: $0) } ?? false
            let rp = f.readProtect.map { e.isReadProtected(bit: $0) } ?? false
            return FieldValue(name: f.name, block: f.block, value: value, writeProtected: wp,
                              readProtected: rp, description: f.description)
        }
    }
}
