import EFuse
import ESPCore
import FlashEncryption
import ImageFormat
import Partitions
import SecureBoot
import VirtualDevice

/// The bootloader options a boot runs under when no sdkconfig is given or remembered, taken from
/// what the flash and the eFuses show, with one sentence per inferred or assumed option.
public struct InferredBuild: Sendable, Equatable {
    public var sdkconfig: SDKConfig
    public var assumptions: [String]
}

/// Infers the few sdkconfig options the first boot depends on from the facts at hand, so that a
/// plan or a device without an sdkconfig is simulated as the build that made it would boot:
///
/// - the partition-table offset: where a valid table is (the plan's own table first, else
///   0x8000, else the lowest 4 KiB-aligned offset holding one);
/// - Secure Boot V2: the bootloader carries a V2 signature block, or ABS_DONE_1 is burned (the
///   ESP-IDF build signs the bootloader only when Secure Boot V2 is enabled);
/// - flash encryption (the bootloader encrypts on first boot): only when the plan says so —
///   entries marked encrypted, or the manifest's mode. An odd FLASH_CRYPT_CNT alone is not
///   taken as evidence: the hardware decrypts for any bootloader (the recorded real ESP32 boots
///   a plain v5.2.2 bootloader that way), so the bootloader's own setting stays unknown.
///
/// Static checks (preflight) and the simulation read the same hints, so they agree.
public enum BuildInference {
    public struct Hints: Sendable, Equatable {
        /// Where the plan writes its partition table (preflight's table offset).
        public var partitionTableOffset: Int?
        /// The plan encrypts (entries marked encrypted, `--encrypt`, or a manifest with flash
        /// encryption): the bootloader was built with flash encryption.
        public var flashEncryption: Bool?
        /// The manifest's release mode.
        public var releaseMode: Bool?
        public init(partitionTableOffset: Int? = nil, flashEncryption: Bool? = nil, releaseMode: Bool? = nil) {
            self.partitionTableOffset = partitionTableOffset
            self.flashEncryption = flashEncryption
            self.releaseMode = releaseMode
        }
    }

    static let bootloaderOffset = 0x1000
    /// Highest offset searched for a partition table (ESP-IDF places it before the first app).
    static let tableSearchLimit = 0x100000

    /// Infers from a device's flash (as the chip's cache reads it: decrypted when flash
    /// encryption is on and the key is in BLOCK1) and eFuses.
    public static func infer(device: Device, hints: Hints = Hints()) -> InferredBuild {
        let cipher = decryptingCipher(device.efuses)
        let flash = device.flash
        return infer(read: { offset, length in
            guard var bytes = flash.read(offset, length) else { return nil }
            if let cipher, offset % 32 == 0, length % 32 == 0, let plain = try? cipher.decrypt(bytes, at: offset) {
                bytes = plain
            }
            return bytes
        }, flashSize: flash.size, efuses: device.efuses, hints: hints)
    }

    /// Infers from a flash reader (`read(offset, length)`, nil past the end).
    public static func infer(read: (Int, Int) -> [UInt8]?, flashSize: Int, efuses: EFuseArray,
                             hints: Hints = Hints()) -> InferredBuild {
        var sdk = SDKConfig()
        var notes: [String] = []

        // Partition table.
        if let offset = tableOffset(read: read, flashSize: flashSize, preferred: hints.partitionTableOffset) {
            sdk.partitionTableOffset = offset
            notes.append("partition table found at \(NumberParsing.hex(offset)): CONFIG_PARTITION_TABLE_OFFSET=\(NumberParsing.hex(offset))")
        } else {
            notes.append("no valid partition table found in flash: CONFIG_PARTITION_TABLE_OFFSET=0x8000 (ESP-IDF's default)")
        }

        // Secure Boot V2.
        let absDone1 = EFuseLayout.esp32.field(named: "ABS_DONE_1").map { efuses.integer($0, layout: .esp32) } ?? 0
        if signedBootloader(read: read, limit: sdk.partitionTableOffset) {
            sdk.secureBootV2 = true
            notes.append("the bootloader carries a Secure Boot V2 signature block: CONFIG_SECURE_BOOT_V2_ENABLED=y")
        } else if absDone1 != 0 {
            sdk.secureBootV2 = true
            notes.append("ABS_DONE_1 is burned (Secure Boot V2 already on): CONFIG_SECURE_BOOT_V2_ENABLED=y")
        } else {
            notes.append("the bootloader is not signed: Secure Boot V2 not enabled by it")
        }

        // Flash encryption.
        if hints.flashEncryption == true {
            sdk.flashEncryption = true
            sdk.releaseMode = hints.releaseMode ?? false
            sdk.uartAllowEncrypt = !sdk.releaseMode
            notes.append("the plan encrypts: CONFIG_SECURE_FLASH_ENC_ENABLED=y, "
                         + (sdk.releaseMode ? "release mode" : "development mode" + (hints.releaseMode == nil ? " (assumed)" : "")))
        } else {
            notes.append("nothing says the bootloader enables flash encryption: assumed built without it"
                         + (flashCryptCount(efuses).nonzeroBitCount % 2 == 1 ? " (flash encryption is already on in eFuse; the chip decrypts)" : ""))
        }
        return InferredBuild(sdkconfig: sdk, assumptions: notes)
    }

    /// The offset of a valid partition table: `preferred` if one is there, else 0x8000, else the
    /// lowest 4 KiB-aligned offset after the bootloader.
    static func tableOffset(read: (Int, Int) -> [UInt8]?, flashSize: Int, preferred: Int?) -> Int? {
        func valid(_ offset: Int) -> Bool {
            guard offset >= 0x2000, offset % 0x1000 == 0, offset + PartitionTable.maxLength <= flashSize,
                  let head = read(offset, 32), head[0] == 0xAA, head[1] == 0x50,
                  let bytes = read(offset, PartitionTable.maxLength),
                  let parsed = try? PartitionTable.parse(binary: bytes) else { return false }
            return parsed.table.entries.contains { $0.type == 0 }
        }
        if let preferred, valid(preferred) { return preferred }
        if valid(0x8000) { return 0x8000 }
        var offset = 0x2000
        while offset < min(flashSize, tableSearchLimit) {
            if valid(offset) { return offset }
            offset += 0x1000
        }
        return nil
    }

    /// True when the image at 0x1000 is followed (at its 4 KiB-padded end) by a V2 signature block.
    static func signedBootloader(read: (Int, Int) -> [UInt8]?, limit: Int) -> Bool {
        let room = max(0, limit - bootloaderOffset)
        guard room > 0, let bytes = read(bootloaderOffset, room),
              let image = try? ESPImage(bytes), image.imageEnd <= bytes.count else { return false }
        let sector = (image.imageEnd + 0xFFF) & ~0xFFF
        guard sector + SignatureSector.size <= bytes.count else { return false }
        return !SignatureSector.parse(file: bytes, offset: sector).entries.isEmpty
    }

    static func flashCryptCount(_ efuses: EFuseArray) -> UInt64 {
        EFuseLayout.esp32.field(named: "FLASH_CRYPT_CNT").map { efuses.integer($0, layout: .esp32) } ?? 0
    }

    /// The chip's flash-encryption engine when encryption is on (odd FLASH_CRYPT_CNT) and BLOCK1
    /// holds a key (the cells; the chip uses them even when software cannot read them).
    static func decryptingCipher(_ efuses: EFuseArray) -> FlashCipher? {
        guard flashCryptCount(efuses).nonzeroBitCount % 2 == 1 else { return nil }
        return ESP32FlashKey.cipher(efuses)
    }
}
