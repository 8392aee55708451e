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
/// - Secure Boot V2: the bootloader carries a V2 signature block, or the eFuses show Secure Boot
///   V2 (the ESP-IDF build signs the bootloader only when Secure Boot V2 is enabled): on the
///   ESP32 ABS_DONE_1; on the ESP32-S3/C3 SECURE_BOOT_EN, or a key block with purpose
///   SECURE_BOOT_DIGESTn (a digest burned ahead of the first boot);
/// - flash encryption (the bootloader encrypts on first boot): only when the plan says so —
///   entries marked encrypted, or the manifest's mode. An odd FLASH_CRYPT_CNT (S3/C3:
///   SPI_BOOT_CRYPT_CNT) alone is not taken as evidence: the hardware decrypts for any
///   bootloader (the recorded real ESP32 boots a plain v5.2.2 bootloader that way), so the
///   bootloader's own setting stays unknown.
///
/// The eFuses are read the chip's way (``FuseEvidence``): the ESP32's register layout, or an
/// S3/C3's field map; the bootloader is looked for at the chip's offset (0x1000, S3/C3 0x0).
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

    /// What the eFuses say about Secure Boot V2 and flash encryption, read the chip's way.
    public struct FuseEvidence: Sendable, Equatable {
        /// The sentence for a burned Secure Boot fuse (`ABS_DONE_1 is burned`, `SECURE_BOOT_EN is
        /// burned`); nil when it is not burned.
        public var secureBootFuse: String?
        /// Secure Boot V2 digest slots holding a key digest (S3/C3 key purposes SECURE_BOOT_DIGESTn).
        public var digestSlots: [Int] = []
        /// An odd number of the encryption counter's bits is set (FLASH_CRYPT_CNT, SPI_BOOT_CRYPT_CNT).
        public var flashEncryptionOn: Bool

        /// An ESP32's eFuses (ABS_DONE_1, FLASH_CRYPT_CNT).
        public static func esp32(_ efuses: EFuseArray) -> FuseEvidence {
            let absDone1 = EFuseLayout.esp32.field(named: "ABS_DONE_1").map { efuses.integer($0, layout: .esp32) } ?? 0
            return FuseEvidence(secureBootFuse: absDone1 != 0 ? "ABS_DONE_1 is burned" : nil,
                                flashEncryptionOn: flashCryptCount(efuses).nonzeroBitCount % 2 == 1)
        }

        /// An S3/C3's blocks through its field map (SECURE_BOOT_EN, digest key purposes,
        /// SPI_BOOT_CRYPT_CNT).
        public static func fieldMap(_ cells: EFuseBlockWords, map: EFuseFieldMap) -> FuseEvidence {
            let security = EFuseFieldMapSummary(words: cells, map: map).security
            return FuseEvidence(secureBootFuse: security.secureBootEnabled ? "SECURE_BOOT_EN is burned" : nil,
                                digestSlots: security.secureBootDigestSlots, flashEncryptionOn: security.flashEncryptionEnabled)
        }

        /// The device's eFuses, read through its chip's model.
        public static func of(_ device: Device) -> FuseEvidence {
            guard let map = device.chip?.efuseMap, let cells = device.cells else { return esp32(device.efuses) }
            return fieldMap(cells, map: map)
        }
    }
    /// Highest offset searched for a partition table (ESP-IDF places it before the first app).
    static let tableSearchLimit = 0x100000

    /// Infers from a device's flash (as the chip's cache reads it: decrypted when flash
    /// encryption is on and the key is in eFuse: the ESP32's BLOCK1, an S3/C3's XTS key block)
    /// and eFuses.
    public static func infer(device: Device, hints: Hints = Hints()) -> InferredBuild {
        let cipher = decryptingCipher(device)
        let flash = device.flash
        return infer(read: { offset, length in
            guard var bytes = flash.read(offset, length) else { return nil }
            if let cipher, offset % 32 == 0, length % 32 == 0, let plain = try? cipher.decrypt(bytes, at: offset) {
                bytes = plain
            }
            return bytes
        }, flashSize: flash.size, evidence: .of(device), bootloaderOffset: BootChip.of(device).bootloaderOffset, hints: hints)
    }

    /// Infers from a flash reader (`read(offset, length)`, nil past the end) and an ESP32's eFuses.
    public static func infer(read: (Int, Int) -> [UInt8]?, flashSize: Int, efuses: EFuseArray,
                             hints: Hints = Hints()) -> InferredBuild {
        infer(read: read, flashSize: flashSize, evidence: .esp32(efuses), bootloaderOffset: 0x1000, hints: hints)
    }

    /// Infers from a flash reader, what the eFuses show and where the chip's ROM finds the bootloader.
    public static func infer(read: (Int, Int) -> [UInt8]?, flashSize: Int, evidence: FuseEvidence,
                             bootloaderOffset: Int, hints: Hints = Hints()) -> InferredBuild {
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
        if signedBootloader(read: read, at: bootloaderOffset, limit: sdk.partitionTableOffset) {
            sdk.secureBootV2 = true
            notes.append("the bootloader carries a Secure Boot V2 signature block: CONFIG_SECURE_BOOT_V2_ENABLED=y")
        } else if let fuse = evidence.secureBootFuse {
            sdk.secureBootV2 = true
            notes.append("\(fuse) (Secure Boot V2 already on): CONFIG_SECURE_BOOT_V2_ENABLED=y")
        } else if !evidence.digestSlots.isEmpty {
            sdk.secureBootV2 = true
            notes.append("a Secure Boot V2 key digest is burned (slot " + evidence.digestSlots.map(String.init).joined(separator: ", ")
                         + "): CONFIG_SECURE_BOOT_V2_ENABLED=y")
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
                         + (evidence.flashEncryptionOn ? " (flash encryption is already on in eFuse; the chip decrypts)" : ""))
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

    /// True when the image at `bootloaderOffset` is followed (at its 4 KiB-padded end) by a V2
    /// signature block.
    static func signedBootloader(read: (Int, Int) -> [UInt8]?, at bootloaderOffset: Int, limit: Int) -> Bool {
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

    /// The device's engine when encryption is on: the ESP32's BLOCK1, or an S3/C3's XTS key
    /// block(s) with an odd SPI_BOOT_CRYPT_CNT.
    static func decryptingCipher(_ device: Device) -> FlashCipher? {
        guard let chip = device.chip else { return decryptingCipher(device.efuses) }
        guard let cells = device.cells, FuseEvidence.of(device).flashEncryptionOn,
              let key = chip.flashEncryptionKey(cells), let spec = ChipSpec.named(chip.name) else { return nil }
        return try? FlashCipher(chip: spec, key: key)
    }
}
