import ESPCore
import FlashEncryption
import ImageFormat
import Partitions

/// The partition table as the bootloader keeps it (`bootloader_state_t`).
struct PartitionSet {
    var table: [PartitionEntry] = []
    var ota: [Int: PartitionEntry] = [:]
    var factory: PartitionEntry?
    var test: PartitionEntry?
    var otadata: PartitionEntry?
    var appCount: Int { ota.count }

    static let factoryIndex = -1
    static let testIndex = -2

    func partition(_ index: Int) -> PartitionEntry? {
        switch index {
        case Self.factoryIndex: return factory
        case Self.testIndex: return test
        default: return ota[index]
        }
    }
}

/// Bootloader phase: the ESP-IDF second-stage bootloader (v4.4 or v5.x behaviour and wording, per
/// ``BootloaderDialect``): banner and flash info, partition table, OTA selection, then the apps
/// in boot order, each loaded (``ImageLoad``) and, on a first boot, put through
/// ``SecureBootEnablePhase`` and ``FlashEncryptionEnablePhase`` before it starts.
enum BootloaderPhase {
    enum End {
        case started(String, Int)
        /// Flash encryption was just turned on: the chip resets.
        case reset
    }

    static func run(_ s: inout BootState) throws -> End {
        s.otaHasInitialContents = false
        printBanner(&s)
        guard let parts = loadPartitionTable(&s) else {
            s.E("boot", "load partition table error!")
            throw BootStop(result: .bootloaderHalted, reason: "the partition table at 0x\(String(s.sdk.partitionTableOffset, radix: 16)) is invalid (the chip resets and retries forever)")
        }
        let start = selectBootIndex(&s, parts)
        return try loadBootImage(&s, parts, startIndex: start)
    }

    /// Resolves the IDF version (and so the dialect), then prints the banner and the flash
    /// settings of the bootloader's header.
    static func printBanner(_ s: inout BootState) {
        let boot = s.chip.bootloaderOffset
        let header = s.read(boot, 24) ?? [UInt8](repeating: 0, count: 24)
        // v5.2+ bootloaders carry a descriptor at the start of their first (DRAM) segment.
        let resolved = IDFVersion.resolve(configured: s.config.idfVersion,
                                          descriptor: s.read(boot + 24 + 8, BootloaderDescriptor.size),
                                          sdkconfig: s.sdk.idfVersion)
        s.dialect = BootloaderDialect.of(resolved.version)
        s.idfVersion = (resolved.version.label, resolved.source)
        s.I("boot", "ESP-IDF \(resolved.version.label) 2nd stage bootloader")
        let descriptorTime: String?
        switch s.dialect.compileTime {
        case .timeOnly: descriptorTime = resolved.descriptor?.dateTime.split(separator: " ").last.map(String.init)
        case .dateAndTime: descriptorTime = resolved.descriptor?.dateTime
        }
        s.I("boot", "compile time \(s.config.compileTime ?? descriptorTime ?? s.dialect.defaultCompileTime)")
        if s.chip.fieldMap == nil ? s.dialect.multicoreLine : s.chip.multicore { s.I("boot", "Multicore bootloader") }
        switch s.dialect.chipRevisionFormat {
        case .major: s.I("boot", "chip revision: \(s.device.description.chipRevision)")
        case .majorMinor: s.I("boot", "chip revision: v\(s.device.description.chipRevision).\(s.minorRevision)")
        }
        let speeds: [UInt8: String] = [0x0: "40MHz", 0x1: "26.7MHz", 0x2: "20MHz", 0xF: "80MHz"]
        let tag = s.chip.idfTag
        s.I(tag, "\(s.chip.spiSpeedLabel)\(speeds[header[3] & 0x0F] ?? "40MHz")")
        let modes = ["QIO", "QOUT", "DIO", "DOUT", "FAST READ", "SLOW READ"]
        s.I(tag, "SPI Mode       : \(header[2] < 6 ? modes[Int(header[2])] : "SLOW READ")")
        let sizes: [UInt8: String] = [0x00: "1MB", 0x10: "2MB", 0x20: "4MB", 0x30: "8MB", 0x40: "16MB"]
        s.I(tag, "SPI Flash Size : \(sizes[header[3] & 0xF0] ?? "Unknown")")
        s.I("boot", "Enabling RNG early entropy source...")
    }

    // MARK: partition table

    static func usage(_ e: PartitionEntry) -> String {
        switch e.type {
        case PartitionEntry.Kind.app:
            if e.subtype == PartitionEntry.AppSubtype.factory { return "factory app" }
            if e.subtype == PartitionEntry.AppSubtype.test { return "test app" }
            if e.subtype >= 0x10 && e.subtype < 0x20 { return "OTA app" }
            return "Unknown app"
        case PartitionEntry.Kind.data:
            switch e.subtype {
            case PartitionEntry.DataSubtype.ota: return "OTA data"
            case PartitionEntry.DataSubtype.phy: return "RF data"
            case PartitionEntry.DataSubtype.nvs: return "WiFi data"
            case PartitionEntry.DataSubtype.nvsKeys: return "NVS keys"
            case PartitionEntry.DataSubtype.efuse: return "efuse"
            default: return "Unknown data"
            }
        default:
            return "unknown"
        }
    }

    /// Reads and verifies the table as the bootloader does (through decryption when on).
    static func parseTable(_ s: inout BootState) -> (entries: [PartitionEntry]?, error: String?) {
        guard let bytes = s.read(s.sdk.partitionTableOffset, PartitionTable.maxLength) else {
            return (nil, "partition table lies beyond the end of flash")
        }
        if bytes[0] == 0xFF && bytes[1] == 0xFF { return ([], nil) }
        do {
            let parsed = try PartitionTable.parse(binary: bytes, verifyMD5: true)
            return (parsed.table.entries, nil)
        } catch {
            if bytes[0] != 0xAA || bytes[1] != 0x50 {
                return (nil, "partition 0 invalid magic number 0x\(String(UInt16(bytes[0]) | UInt16(bytes[1]) << 8, radix: 16))")
            }
            return (nil, error.diagnostic.message)
        }
    }

    static func loadPartitionTable(_ s: inout BootState) -> PartitionSet? {
        let (entries, problem) = parseTable(&s)
        guard let entries else {
            s.E("flash_parts", problem ?? "partition table invalid")
            s.E("boot", "Failed to verify partition table")
            return nil
        }
        s.I("boot", "Partition Table:")
        s.I("boot", "## Label            Usage          Type ST Offset   Length")
        var parts = PartitionSet(table: entries)
        for (i, e) in entries.enumerated() {
            if e.type == PartitionEntry.Kind.app {
                if e.subtype == PartitionEntry.AppSubtype.factory { parts.factory = e }
                else if e.subtype == PartitionEntry.AppSubtype.test { parts.test = e }
                else if e.subtype >= 0x10 && e.subtype < 0x20 { parts.ota[Int(e.subtype & 0x0F)] = e }
            } else if e.type == PartitionEntry.Kind.data && e.subtype == PartitionEntry.DataSubtype.ota {
                parts.otadata = e
            }
            s.I("boot", "\(padLeft(String(i), 2)) \(padRight(e.name, 16)) \(padRight(usage(e), 16)) \(hex2(e.type)) \(hex2(e.subtype)) \(hex8(e.offset)) \(hex8(e.size))")
        }
        s.I("boot", "End of partition table")
        return parts
    }

    // MARK: OTA selection

    static func selectBootIndex(_ s: inout BootState, _ parts: PartitionSet) -> Int {
        guard let od = parts.otadata else { return PartitionSet.factoryIndex }
        guard let bytes = s.read(Int(od.offset), min(Int(od.size), Otadata.size)),
              let parsed = try? Otadata.parse(bytes) else { return PartitionSet.factoryIndex }
        switch parsed.boot(otaAppCount: parts.appCount, hasFactory: parts.factory != nil) {
        case .ota(let n):
            return n
        case .factory, .firstOTA:
            if parts.factory != nil {
                s.I("boot", "Defaulting to factory image")
                return PartitionSet.factoryIndex
            }
            s.I("boot", "No factory image, trying OTA 0")
            s.otaHasInitialContents = true
            return 0
        case .invalidFallback(let hasFactory):
            s.idf(s.dialect.otadataInvalidLevel, "boot", hasFactory ? "ota data partition invalid, falling back to factory"
                : "ota data partition invalid and no factory, will try all partitions")
            return PartitionSet.factoryIndex
        }
    }

    static func logInvalid(_ s: inout BootState, _ index: Int) {
        switch index {
        case PartitionSet.factoryIndex: s.E("boot", "Factory app partition is not bootable")
        case PartitionSet.testIndex: s.E("boot", "Factory test app partition is not bootable")
        default: s.E("boot", "OTA app partition slot \(index) is not bootable")
        }
    }

    // MARK: app selection

    /// Tries the apps from `startIndex` down to factory, then the OTA slots above it, then the
    /// test app; the first that loads (and passes the first-boot security steps) starts.
    static func loadBootImage(_ s: inout BootState, _ parts: PartitionSet, startIndex: Int) throws -> End {
        var order: [Int] = []
        if startIndex >= PartitionSet.factoryIndex {
            order += Array(stride(from: startIndex, through: PartitionSet.factoryIndex, by: -1))
        }
        let maxSlot = (parts.ota.keys.max() ?? -1)
        if startIndex + 1 <= maxSlot { order += Array((startIndex + 1)...maxSlot) }
        for index in order {
            guard let part = parts.partition(index), part.size > 0 else { continue }
            if case .success(let image) = ImageLoad.load(&s, at: Int(part.offset), partitionSize: Int(part.size), mode: .load) {
                s.I("boot", "Loaded app from partition at offset 0x\(String(part.offset, radix: 16))")
                setActualOTASeq(&s, parts, index)
                if let end = try loadImageAndStart(&s, image) {
                    if case .started = end { return .started(part.name, Int(part.offset)) }
                    return end
                }
            } else {
                s.lastError = ESPErr.imageInvalid
            }
            logInvalid(&s, index)
        }
        if let test = parts.test, test.size > 0,
           case .success(let image) = ImageLoad.load(&s, at: Int(test.offset), partitionSize: Int(test.size), mode: .load) {
            s.I("boot", "Loaded app from partition at offset 0x\(String(test.offset, radix: 16))")
            s.W("boot", s.dialect.testAppFallback)
            if let end = try loadImageAndStart(&s, image) {
                if case .started = end { return .started(test.name, Int(test.offset)) }
                return end
            }
        }
        s.E("boot", "No bootable app partitions in the partition table")
        throw BootStop(result: .noBootableApp, reason: "no app partition could be booted (the chip resets and retries forever)")
    }

    static func setActualOTASeq(_ s: inout BootState, _ parts: PartitionSet, _ index: Int) {
        guard index > PartitionSet.factoryIndex, s.otaHasInitialContents, let od = parts.otadata else { return }
        let seq = UInt32(index + 1)
        let entry = Otadata.entry(sequence: seq, state: .valid)
        s.eraseAndWrite(Int(od.offset), entry, encrypt: s.flashEncryptionEnabled)
        s.I("boot", "Set actual ota_seq=\(seq) in otadata[0]")
    }

    /// `load_image`: the first-boot security phases, then start. Nil = this app failed (try the next).
    static func loadImageAndStart(_ s: inout BootState, _ image: LoadedImage) throws -> End? {
        if s.sdk.secureBootV2 {
            let err = SecureBootEnablePhase.run(&s, app: image)
            if err != 0 {
                s.lastError = err
                s.E("boot", "Secure Boot v2 failed (\(err))")
                return nil
            }
        }
        if s.sdk.flashEncryption {
            s.I("boot", "Checking flash encryption...")
            let wasEncrypted = s.flashEncryptionEnabled
            let err = FlashEncryptionEnablePhase.run(&s)
            if err != 0 {
                s.lastError = err
                s.E("boot", "Flash encryption check failed (\(err)).")
                return nil
            }
            if !wasEncrypted && s.flashEncryptionEnabled {
                s.I("boot", "Resetting with flash encryption enabled...")
                return .reset
            }
        }
        s.I("boot", "Disabling RNG early entropy source...")
        return .started("", image.start)
    }
}
