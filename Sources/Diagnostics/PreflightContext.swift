import ESPCore
import FlashEncryption
import ImageFormat
import Partitions
import SecureBoot

/// What a plan entry holds, as far as preflight can tell from its bytes.
public enum ContentKind: String, Sendable, Codable {
    case bootloaderImage = "bootloader image"
    case appImage = "app image"
    case image = "image"
    case partitionTable = "partition table"
    case data = "data"
}

/// One plan entry, parsed once for all rules.
public struct AnalyzedEntry: Sendable {
    public var entry: PlanEntry
    public var kind: ContentKind
    public var image: ESPImage?
    /// Secure Boot V2 blocks checked against the content (nil: not signed).
    public var signature: SecureBootVerifier.Inspection?

    public var isSigned: Bool { signature.map { !$0.checks.isEmpty } ?? false }
    /// Key digest of signature block 0 (the only one ESP32 honours).
    public var block0KeyDigest: [UInt8]? { signature?.checks.first?.block.keyDigest }
    public var isImage: Bool { image != nil }
}

/// The plan and the target, parsed once; rules read from here.
public struct PreflightContext: Sendable {
    public let plan: FlashPlan
    public let target: TargetFacts
    public let entries: [AnalyzedEntry]
    /// Where the partition table is (configured, or where the plan writes one), and its content.
    public let tableOffset: Int
    public let tableOffsetConfigured: Bool
    /// The table offset is configured or the plan writes a table (else 0x8000 is assumed).
    public var tableOffsetKnown: Bool { tableOffsetConfigured || tableEntryAddress != nil }
    public let partitionTable: PartitionTable?
    /// The address the plan writes the table to, when it writes one.
    public let tableEntryAddress: Int?

    public init(plan: FlashPlan, target: TargetFacts) {
        self.plan = plan
        self.target = target
        var analyzed: [AnalyzedEntry] = []
        var foundTable: (Int, PartitionTable)?
        for e in plan.entries {
            var kind = ContentKind.data
            var image: ESPImage?
            var signature: SecureBootVerifier.Inspection?
            if e.bytes.first == ESPImage.magic, let img = try? ESPImage(e.bytes) {
                image = img
                kind = Self.classify(img)
                if img.hasSignatureSector {
                    signature = SecureBootVerifier.inspect(image: e.bytes, sectorOffset: img.signatureSectorOffset)
                }
            } else if e.bytes.count >= 32, e.bytes[0] == 0xAA, e.bytes[1] == 0x50,
                      let parsed = try? PartitionTable.parse(binary: Array(e.bytes.prefix(PartitionTable.maxLength)), verifyMD5: true) {
                kind = .partitionTable
                if foundTable == nil || e.address == plan.partitionTableOffset { foundTable = (e.address, parsed.table) }
            }
            analyzed.append(AnalyzedEntry(entry: e, kind: kind, image: image, signature: signature))
        }
        entries = analyzed
        tableOffsetConfigured = plan.partitionTableOffset != nil
        tableOffset = plan.partitionTableOffset ?? foundTable?.0 ?? 0x8000
        partitionTable = foundTable?.1
        tableEntryAddress = foundTable?.0
    }

    static func classify(_ img: ESPImage) -> ContentKind {
        if img.appDescriptor != nil { return .appImage }
        if img.bootloaderDescriptor != nil { return .bootloaderImage }
        let chip = img.chip
        let mapped = img.segments.contains { s in chip?.isFlashMapped(s.loadAddress) ?? false }
        return mapped ? .appImage : .bootloaderImage
    }

    public var bootloader: AnalyzedEntry? { entries.first { $0.entry.address == target.chip.bootloaderOffset } }
    public var apps: [AnalyzedEntry] { entries.filter { $0.kind == .appImage } }
    public var sdk: SDKConfig? { plan.sdkconfig }
    public var efuses: SecurityFuseFacts? { target.efuses }

    /// ABS_DONE_1 is burned: the ROM verifies the bootloader; no Secure Boot finding may be overridden.
    public var secureBootEnabled: Bool { efuses?.absDone1 ?? false }

    /// Secure Boot V2 is (or will be) in force: configured, burned, or the images are signed.
    public var secureBootExpected: Bool {
        (sdk?.secureBootV2 ?? false) || (efuses?.absDone1 ?? false)
    }

    /// The partition containing `address`, if the table is known.
    public func partition(containing address: Int) -> PartitionEntry? {
        partitionTable?.entries.first { Int($0.offset) <= address && address < $0.end }
    }

    /// The flash size the plan is checked against: the chip's, else what the build configured.
    public var flashSize: (bytes: Int, source: String)? {
        if let s = target.flashSize { return (s, "target (\(target.source))") }
        if let t = sdk?.flashSize, let s = NumberParsing.size(t) { return (s, "CONFIG_ESPTOOLPY_FLASHSIZE") }
        return nil
    }

    /// Header bytes 2..3 after esptool's write-time rewrite with the plan's options (only the
    /// bootloader offset is rewritten, and only a valid image). nil if nothing changes.
    public func rewrittenHeader(for e: AnalyzedEntry) -> (mode: UInt8, sizeFreq: UInt8)? {
        guard e.entry.address == target.chip.bootloaderOffset, plan.options.rewritesHeader,
              let img = e.image, let chip = img.chip else { return nil }
        var mode = img.flashModeCode, size = img.flashSizeCode, freq = img.flashFrequencyCode
        if let m = plan.options.mode, let c = chip.flashMode(named: m) { mode = c.code }
        if let s = plan.options.size {
            if s.lowercased() == "detect" {
                // esptool puts the size it detects on the chip into the header.
                if let ts = target.flashSize, let c = chip.flashSizes.first(where: { $0.value == ts }) { size = c.code }
            } else if let c = chip.flashSize(named: s) {
                size = c.code
            }
        }
        if let f = plan.options.frequency, let c = chip.flashFrequency(named: f) { freq = c.code }
        let b3 = size | freq
        if mode == img.flashModeCode && b3 == img.flashSizeFreq { return nil }
        return (mode, b3)
    }

    /// `--flash-size detect` with an unknown target flash size: the header may be rewritten to
    /// whatever the chip reports.
    public var headerSizeDetectUnknown: Bool {
        plan.options.size?.lowercased() == "detect" && target.flashSize == nil
    }

    /// The encryption layout of the plan's partition table.
    public var encryptionLayout: EncryptionLayout? {
        guard let t = partitionTable else { return nil }
        return EncryptionRules.layout(partitions: t.entries, chip: target.chip, partitionTableOffset: tableOffset)
    }
}
