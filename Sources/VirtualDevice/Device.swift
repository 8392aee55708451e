import EFuse
import ESPCore

/// What a virtual device is (persisted as `device.json`).
public struct DeviceDescription: Sendable, Equatable, Codable {
    /// Format version of the state folder.
    public var format: Int = 1
    public var chip: String
    /// Major chip revision 0…3 (3 = ESP32-D0WD-V3; the eFuse bits and APB_CTRL_DATE agree).
    public var chipRevision: Int
    /// Minor chip revision (ESP32-S3/C3 only: WAFER_VERSION_MINOR; absent for the ESP32).
    public var minorRevision: Int?
    /// 4-bit package code (1 = D0WD).
    public var package: Int
    /// Factory MAC, `24:0a:c4:…` on an ESP32 (also burned into the eFuses).
    public var mac: String
    public var flashSize: Int
    /// JEDEC id as read by RDID, little-endian bytes in a word: 0x1640EF = Winbond (EF), 0x4016.
    public var flashID: UInt32
    public var crystalHz: Int = 40_000_000

    public init(chip: String = "esp32", chipRevision: Int = 3, package: Int = 1, mac: String,
                flashSize: Int = 4 << 20, flashID: UInt32 = 0x1640EF) {
        self.chip = chip
        self.chipRevision = chipRevision
        self.package = package
        self.mac = mac
        self.flashSize = flashSize
        self.flashID = flashID
    }
}

public enum DeviceError: Error, Equatable, Sendable {
    case unsupportedChip(String)
    case badFlashSize(Int)
    case badRevision(chip: String, String)
    /// What is not modelled for this chip yet (e.g. the boot simulator on an ESP32-S3/C3).
    case notModelled(chip: String, String)
    case badFlashID(UInt32)
    case stateMissing(String)
    case stateDamaged(String, String)
    case stateExists(String)
    case io(String, String)
    case badFaultSpec(String, String)
    case network(String)
}

extension DeviceError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .unsupportedChip(c):
            return Diagnostic("chip '\(c)' cannot be simulated",
                              hint: "`espforge device` simulates \(VirtualChip.supportedNames.joined(separator: ", "))")
        case let .badRevision(chip, rev):
            return Diagnostic("chip revision \(rev) is not a revision of an \(chip)",
                              hint: "give --chip-rev 0…3 and --chip-rev-minor 0…15, e.g. --chip-rev 0 --chip-rev-minor 4")
        case let .notModelled(chip, what):
            return Diagnostic("\(what) is not modelled for the \(chip) yet",
                              hint: "the virtual \(chip) speaks the ROM loader, the stub and the eFuse controller; see docs/virtual-device-chips.md")
        case let .badFlashSize(s):
            return Diagnostic("flash size \(s) is not supported",
                              hint: "use a power of two from 1MB to 16MB, e.g. --flash-size 4MB")
        case let .badFlashID(id):
            return Diagnostic("flash id 0x\(String(id, radix: 16)) is not a valid JEDEC id",
                              hint: "give three bytes as RDID returns them, e.g. 0x1640EF (Winbond, 4 MB)")
        case let .stateMissing(dir):
            return Diagnostic("no virtual device in this folder", file: dir,
                              hint: "create one with `espforge device create --state \(dir)`")
        case let .stateDamaged(file, why):
            return Diagnostic("device state is damaged: \(why)", file: file,
                              hint: "recreate the device with `espforge device create`")
        case let .stateExists(dir):
            return Diagnostic("a virtual device already exists in this folder", file: dir,
                              hint: "pass --force to replace it, or choose another --state folder")
        case let .io(file, why):
            return Diagnostic(why, file: file)
        case let .badFaultSpec(spec, why):
            return Diagnostic("fault specification '\(spec)': \(why)",
                              hint: "e.g. --faults drop=0.001,flip=0.0005,stall=0.01:200,disconnect-after=50000,reset-after=200")
        case let .network(why):
            return Diagnostic(why, hint: "only loopback addresses are served, e.g. --listen 127.0.0.1:0")
        }
    }
}

/// A virtual ESP32, ESP32-S3 or ESP32-C3: its description, flash, eFuses and counters. Pure value;
/// see ``DeviceStore`` for the files.
public struct Device: Sendable {
    public var description: DeviceDescription
    public var flash: NORFlash
    /// The ESP32's eFuse array (an ESP32-S3/C3 device keeps a blank one here and its fuses in
    /// ``cells``).
    public var efuses: EFuseArray
    /// The burned fuses of an ESP32-S3/C3 (read-protected blocks included); nil on an ESP32.
    public var cells: EFuseBlockWords?
    public var stats: DeviceStats

    public init(description: DeviceDescription, flash: NORFlash, efuses: EFuseArray, cells: EFuseBlockWords? = nil,
                stats: DeviceStats = DeviceStats()) {
        self.description = description
        self.flash = flash
        self.efuses = efuses
        self.cells = cells
        self.stats = stats
    }

    /// The chip's loader facts when it is an ESP32-S3/C3 (nil: the ESP32 model).
    public var chip: VirtualChip? { VirtualChip.named(description.chip) }

    /// A blank device: flash all 0xFF, eFuses in factory state.
    public static func create(_ d: DeviceDescription) throws -> Device {
        let chip = VirtualChip.named(d.chip)
        guard d.chip == "esp32" || chip != nil else { throw DeviceError.unsupportedChip(d.chip) }
        guard d.flashSize >= 1 << 20, d.flashSize <= 16 << 20, d.flashSize & (d.flashSize - 1) == 0 else {
            throw DeviceError.badFlashSize(d.flashSize)
        }
        guard d.flashID <= 0xFF_FFFF, d.flashID & 0xFF != 0, d.flashID & 0xFF != 0xFF else {
            throw DeviceError.badFlashID(d.flashID)
        }
        let mac = try MACAddress.parse(d.mac)
        var desc = d
        desc.mac = MACAddress.format(mac)
        if let chip {
            desc.chip = chip.name
            desc.minorRevision = d.minorRevision ?? chip.defaultMinorRevision
            let cells = try chip.factoryEFuses(mac: mac, major: d.chipRevision, minor: desc.minorRevision ?? 0,
                                               package: d.package)
            return Device(description: desc, flash: NORFlash(size: d.flashSize), efuses: EFuseArray(layout: .esp32),
                          cells: cells)
        }
        let efuses = try EFuseArray.esp32Factory(mac: mac, revision: d.chipRevision, package: d.package)
        return Device(description: desc, flash: NORFlash(size: d.flashSize), efuses: efuses)
    }

    /// A MAC with an Espressif OUI (24:0a:c4 unless `oui` is given) and three bytes derived from `seed`.
    public static func defaultMAC(seed: UInt64, oui: [UInt8] = [0x24, 0x0A, 0xC4]) -> String {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return MACAddress.format(oui.prefix(3) + [UInt8(z & 0xFF), UInt8((z >> 8) & 0xFF), UInt8((z >> 16) & 0xFF)])
    }

    /// Flash size code in RDID's top byte: log2(size).
    public static func jedecSizeCode(for size: Int) -> UInt32 {
        var s = size, n: UInt32 = 0
        while s > 1 { s >>= 1; n += 1 }
        return n
    }
}
