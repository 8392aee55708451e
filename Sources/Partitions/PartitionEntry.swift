/// One entry of an ESP partition table (32 bytes on flash). Shared by the partition-table builder,
/// flash encryption (which partitions get encrypted) and, later, the boot simulator.
public struct PartitionEntry: Sendable, Hashable, Codable {
    public var name: String
    public var type: UInt8
    public var subtype: UInt8
    public var offset: UInt32
    public var size: UInt32
    /// Bit 0: encrypted, bit 1: readonly.
    public var flags: UInt32

    public init(name: String, type: UInt8, subtype: UInt8, offset: UInt32, size: UInt32, flags: UInt32 = 0) {
        self.name = name
        self.type = type
        self.subtype = subtype
        self.offset = offset
        self.size = size
        self.flags = flags
    }

    public var isEncrypted: Bool { flags & PartitionEntry.flagEncrypted != 0 }
    public var isReadOnly: Bool { flags & PartitionEntry.flagReadOnly != 0 }

    public static let flagEncrypted: UInt32 = 1 << 0
    public static let flagReadOnly: UInt32 = 1 << 1

    /// Partition types.
    public enum Kind {
        public static let app: UInt8 = 0x00
        public static let data: UInt8 = 0x01
        public static let bootloader: UInt8 = 0x02
        public static let partitionTable: UInt8 = 0x03
    }

    /// Data subtypes.
    public enum DataSubtype {
        public static let ota: UInt8 = 0x00
        public static let phy: UInt8 = 0x01
        public static let nvs: UInt8 = 0x02
        public static let coredump: UInt8 = 0x03
        public static let nvsKeys: UInt8 = 0x04
        public static let efuse: UInt8 = 0x05
        public static let undefined: UInt8 = 0x06
        public static let esphttpd: UInt8 = 0x80
        public static let fat: UInt8 = 0x81
        public static let spiffs: UInt8 = 0x82
        public static let littlefs: UInt8 = 0x83
        public static let teeOta: UInt8 = 0x90
    }

    /// Bootloader subtypes (type 0x02): the primary second-stage bootloader, the OTA download slot
    /// for a new bootloader, and the recovery bootloader the ROM falls back to.
    public enum BootloaderSubtype {
        public static let primary: UInt8 = 0x00
        public static let ota: UInt8 = 0x01
        public static let recovery: UInt8 = 0x02
    }

    /// App subtypes: factory 0x00, ota_0..ota_15 = 0x10..0x1F, test 0x20.
    public enum AppSubtype {
        public static let factory: UInt8 = 0x00
        public static let ota0: UInt8 = 0x10
        public static let test: UInt8 = 0x20
    }
}
