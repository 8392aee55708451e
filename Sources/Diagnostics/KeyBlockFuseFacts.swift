import EFuse
import ESPCore

/// The Secure Boot V2 / flash-encryption eFuse state of a chip whose keys live in six key blocks
/// with a purpose each (ESP32-S3, ESP32-C3): what the safety rules need, chip-neutral, built from
/// an ``EFuseFieldMapSummary`` (an `espefuse --virt` file, or the chip's blocks).
public struct KeyBlockFuseFacts: Sendable, Equatable, Codable {
    /// One of BLOCK_KEY0…5.
    public struct KeyBlock: Sendable, Equatable, Codable {
        /// 0…5 (BLOCK_KEYn).
        public var index: Int
        /// KEY_PURPOSE_n by name (`SECURE_BOOT_DIGEST0`, `XTS_AES_128_KEY`, `USER`, …).
        public var purpose: String
        /// No bit set (and not read-protected).
        public var empty: Bool
        public var readProtected: Bool
        public var writeProtected: Bool
        /// KEY_PURPOSE_n's WR_DIS bit is burned.
        public var purposeWriteProtected: Bool
        /// The 32 bytes as software reads them, for readable blocks whose purpose is not a secret
        /// key (digests, user data); nil otherwise. Never a secret key.
        public var content: [UInt8]?

        public init(index: Int, purpose: String, empty: Bool, readProtected: Bool = false,
                    writeProtected: Bool = false, purposeWriteProtected: Bool = false, content: [UInt8]? = nil) {
            self.index = index
            self.purpose = purpose
            self.empty = empty
            self.readProtected = readProtected
            self.writeProtected = writeProtected
            self.purposeWriteProtected = purposeWriteProtected
            self.content = content
        }

        /// The Secure Boot digest slot (0…2) this block's purpose names, if any.
        public var digestSlot: Int? {
            guard purpose.hasPrefix(Self.digestPurposePrefix), let n = Int(purpose.dropFirst(Self.digestPurposePrefix.count)),
                  (0..<3).contains(n) else { return nil }
            return n
        }

        /// Free for a new key or digest: empty, purpose USER, nothing protected (ESP-IDF's test
        /// for a block it may burn).
        public var unused: Bool { empty && purpose == "USER" && !readProtected && !writeProtected && !purposeWriteProtected }

        static let digestPurposePrefix = "SECURE_BOOT_DIGEST"
    }

    /// One burned Secure Boot digest slot.
    public struct DigestSlot: Sendable, Equatable {
        public var slot: Int
        /// BLOCK_KEYn holding it.
        public var keyBlock: Int
        /// The digest as software reads it (zeros when read-protected).
        public var digest: [UInt8]
        public var readProtected: Bool
        public var revoked: Bool
    }

    public var keyBlocks: [KeyBlock]
    public var secureBootEnabled = false
    /// SECURE_BOOT_KEY_REVOKE0…2 that are burned.
    public var revokedSlots: [Int] = []
    public var aggressiveRevoke = false
    public var spiBootCryptCnt = 0
    /// SPI_BOOT_CRYPT_CNT's WR_DIS bit is burned.
    public var cryptCntWriteProtected = false
    public var disDownloadManualEncrypt = false
    public var enableSecurityDownload = false
    public var disDownloadMode = false
    public var disDirectBoot = false
    public var disUSBJTAG = false
    public var disPadJTAG = false
    /// SOFT_DIS_JTAG (3 bits; JTAG off in software when an odd number is set).
    public var softDisJTAG = 0

    public init(keyBlocks: [KeyBlock]) { self.keyBlocks = keyBlocks }

    /// Burned digest slots in slot order (a block with purpose SECURE_BOOT_DIGESTn and content).
    public var digestSlots: [DigestSlot] {
        keyBlocks.compactMap { k in
            guard let slot = k.digestSlot, !k.empty else { return nil }
            return DigestSlot(slot: slot, keyBlock: k.index,
                              digest: k.readProtected ? [UInt8](repeating: 0, count: 32) : (k.content ?? []),
                              readProtected: k.readProtected, revoked: revokedSlots.contains(slot))
        }.sorted { $0.slot < $1.slot }
    }

    /// The slot whose digest is `keyDigest`, if one is burned.
    public func slot(matching keyDigest: [UInt8]) -> DigestSlot? {
        digestSlots.first { !$0.readProtected && $0.digest == keyDigest }
    }

    /// Purposes of the non-empty key blocks.
    public var burnedPurposes: [String] { keyBlocks.filter { !$0.empty }.map(\.purpose) }

    /// Flash encryption is on: an odd number of SPI_BOOT_CRYPT_CNT bits.
    public var flashEncryptionEnabled: Bool { spiBootCryptCnt.nonzeroBitCount % 2 == 1 }
}

extension KeyBlockFuseFacts {
    /// From a decoded S3/C3-style eFuse summary. Secret key bytes are never taken (the summary
    /// hides them; only digest and user-data blocks carry ``KeyBlock/content``).
    public init(summary s: EFuseFieldMapSummary) {
        let sec = s.security
        let blocks = s.keyBlocks.map { k -> KeyBlock in
            var content: [UInt8]?
            if !k.readProtected, let f = s.field("BLOCK_KEY\(k.index)"), f.readable, let hex = f.hex {
                content = [UInt8](hexString: hex)
            }
            return KeyBlock(index: k.index, purpose: k.purposeName, empty: k.empty, readProtected: k.readProtected,
                            writeProtected: k.writeProtected, purposeWriteProtected: k.purposeWriteProtected, content: content)
        }
        self.init(keyBlocks: blocks)
        secureBootEnabled = sec.secureBootEnabled
        revokedSlots = sec.revokedDigestSlots
        aggressiveRevoke = sec.aggressiveRevoke
        spiBootCryptCnt = sec.spiBootCryptCnt
        cryptCntWriteProtected = s.field("SPI_BOOT_CRYPT_CNT").map { !$0.writeable } ?? false
        disDownloadManualEncrypt = sec.disDownloadManualEncrypt
        enableSecurityDownload = sec.enableSecurityDownload
        disDownloadMode = sec.disDownloadMode
        disDirectBoot = sec.disDirectBoot
        disUSBJTAG = sec.disUSBJTAG
        disPadJTAG = sec.disPadJTAG
        softDisJTAG = Int(s.field("SOFT_DIS_JTAG")?.integer ?? 0)
    }
}

extension SecurityFuseFacts {
    /// The facts of an ESP32-S3 / ESP32-C3 from its decoded eFuses: ``keyBlocks`` carries the
    /// key-purpose state, and the chip-neutral fields its equivalents (see ``keyBlocks``).
    public init(fieldMap summary: EFuseFieldMapSummary) {
        self.init()
        let kb = KeyBlockFuseFacts(summary: summary)
        keyBlocks = kb
        flashCryptCount = UInt8(truncatingIfNeeded: kb.spiBootCryptCnt)
        flashEncryptionKeyPresent = kb.keyBlocks.contains { !$0.empty && $0.purpose.hasPrefix("XTS_AES_") }
        absDone1 = kb.secureBootEnabled
        uartDownloadDisabled = kb.disDownloadMode
        disableDLEncrypt = kb.disDownloadManualEncrypt
        flashCryptCountWriteProtected = kb.cryptCntWriteProtected
        waferVersionMinor = summary.minorRevision
    }

    /// From the blocks of an S3/C3-style chip as read through its registers (read-protected
    /// blocks as zeros), e.g. by a loader session or a virtual device.
    public init(words: EFuseBlockWords, map: EFuseFieldMap) {
        self.init(fieldMap: EFuseFieldMapSummary(words: words, map: map))
    }

    /// Reads an `espefuse --virt --path-efuse-file` file of `chip` (esp32s3, esp32c3).
    public static func read(efuseFile path: String, chip: String) throws(EFuseFieldMapError) -> (facts: SecurityFuseFacts, summary: EFuseFieldMapSummary) {
        let (map, words) = try EFuseVirtualFile.read(path, chip: chip)
        let summary = EFuseFieldMapSummary(words: words, map: map)
        return (SecurityFuseFacts(fieldMap: summary), summary)
    }
}
