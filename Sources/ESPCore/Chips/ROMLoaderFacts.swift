/// Per-chip facts about the mask ROM's serial loader that were measured on the real ROM, as a
/// data table (one row per chip; a chip without a row gets the safe defaults).
public struct ROMLoaderFacts: Sendable, Hashable {
    /// Whether the ROM's compressed write (FLASH_DEFL_* without a stub) writes exactly the region.
    /// False unless recorded: the ESP32 ECO3 ROM inflates into a 32 KiB window and writes the
    /// whole last window, so stale bytes land after every compressed region (up to the next
    /// 32 KiB of the stream; `../shared/golden/qemu-esp32/A-flasher`, docs/virtual-device-fidelity.md).
    /// The flasher compresses only through a stub where this is false.
    public let compressedWriteSafe: Bool
    /// Where the fact comes from.
    public let evidence: String

    public init(compressedWriteSafe: Bool, evidence: String) {
        self.compressedWriteSafe = compressedWriteSafe
        self.evidence = evidence
    }

    /// Rows by ``ChipSpec/name``.
    public static let table: [String: ROMLoaderFacts] = [
        "esp32": ROMLoaderFacts(compressedWriteSafe: false,
                                evidence: "ECO3 ROM under QEMU: a compressed 3 KiB partition-table write changed 29,696 bytes behind it (golden/qemu-esp32/A-flasher)"),
    ]

    /// Not recorded: treated as unsafe.
    public static let unrecorded = ROMLoaderFacts(compressedWriteSafe: false, evidence: "not recorded on the real ROM; assumed unsafe")
}

extension ChipSpec {
    /// The chip's ROM loader facts (``ROMLoaderFacts/table``).
    public var romLoader: ROMLoaderFacts { ROMLoaderFacts.table[name] ?? .unrecorded }
    /// Whether the ROM loader's compressed write stays inside the region (see ``ROMLoaderFacts``).
    public var romCompressedWriteSafe: Bool { romLoader.compressedWriteSafe }
}
