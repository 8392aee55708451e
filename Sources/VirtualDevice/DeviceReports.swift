import ESPCore
import Foundation

/// A virtual device as `espforge device create/stats/dump` describe it: the description a
/// command line asks for, and the counters and eFuses as text. Nothing here prints.
public enum DeviceReports {
    /// The description of a new device: `flashSize` as text (e.g. `4MB`), `flashID` a 24-bit
    /// JEDEC id (default: Winbond's 0x40EF with the size code of `flashSize` on top), `mac`
    /// (default: the chip's Espressif OUI — 24:0a:c4 for the ESP32 — and three bytes derived from
    /// the standardized `statePath`), `chipRevision` the major revision (default 3 for the ESP32,
    /// the chip's table default otherwise) and `minorRevision` (S3/C3 only).
    public static func description(chip: String, flashSize: String, chipRevision: Int?, mac: String?,
                                   flashID: String?, statePath: String, minorRevision: Int? = nil) throws -> DeviceDescription {
        let name = chip.lowercased().replacingOccurrences(of: "-", with: "")
        let virtualChip = VirtualChip.named(name)
        guard name == "esp32" || virtualChip != nil else { throw DeviceError.unsupportedChip(chip) }
        if virtualChip == nil, minorRevision != nil {
            throw UsageError("--chip-rev-minor is for the ESP32-S3 and ESP32-C3", hint: "an ESP32 has a major revision only (--chip-rev 0…3)")
        }
        guard let size = NumberParsing.size(flashSize) else {
            throw UsageError("'\(flashSize)' is not a size", hint: "e.g. --flash-size 4MB")
        }
        var id: UInt32
        if let flashID {
            guard let v = NumberParsing.integer(flashID), v >= 0, v <= 0xFF_FFFF else {
                throw UsageError("'\(flashID)' is not a 24-bit JEDEC id", hint: "e.g. --flash-id 0x1640EF")
            }
            id = UInt32(v)
        } else {
            // Size code in the top byte follows the flash size (0x16 = 4 MB).
            id = (Device.jedecSizeCode(for: size) << 16) | 0x40EF
        }
        var seed: UInt64 = 1469598103934665603
        for b in URL(fileURLWithPath: statePath).standardizedFileURL.path.utf8 { seed = (seed ^ UInt64(b)) &* 1099511628211 }
        var d = DeviceDescription(chip: name, chipRevision: chipRevision ?? virtualChip?.defaultMajorRevision ?? 3,
                                  package: virtualChip?.defaultPackage ?? 1,
                                  mac: mac ?? Device.defaultMAC(seed: seed, oui: virtualChip?.macOUI ?? [0x24, 0x0A, 0xC4]),
                                  flashSize: size, flashID: id)
        if let virtualChip { d.minorRevision = minorRevision ?? virtualChip.defaultMinorRevision }
        return d
    }

    /// `created virtual ESP32 rev v3.0 in DIR: MAC …, flash 4MB (JEDEC id 0x1640ef)`.
    public static func createdLine(_ d: DeviceDescription, state: String) -> String {
        "created virtual \(VirtualChip.named(d.chip)?.displayName ?? d.chip.uppercased()) rev v\(d.chipRevision).\(d.minorRevision ?? 0) in \(state): MAC \(d.mac), "
            + "flash \(d.flashSize >> 20)MB (JEDEC id 0x\(String(d.flashID, radix: 16)))"
    }

    /// Traffic, flash operations, virtual time (since creation and of the last connection) and
    /// injected faults, one item a line.
    public static func statsText(_ s: DeviceStats) -> String {
        var lines: [String] = []
        func show(_ title: String, _ c: DeviceCounters) {
            lines += [title,
                      "  bytes in/out:   \(c.bytesIn) / \(c.bytesOut)",
                      "  commands:       \(c.commands)",
                      "  erases:         \(c.sectorErases) sector, \(c.blockErases) block, \(c.chipErases) chip",
                      "  page programs:  \(c.pagePrograms)",
                      "  eFuse programs: \(c.efusePrograms)",
                      String(format: "  virtual time:   %.3f s (wire %.3f s, flash %.3f s)", c.virtualSeconds, c.wireSeconds, c.flashSeconds)]
        }
        show("since creation (\(s.connections) connection(s)):", s.total)
        show("last connection:", s.lastConnection)
        let f = s.faults
        if s.faultSpec != nil || f != FaultCounters() {
            lines.append("faults (spec \(s.faultSpec ?? "-"), seed \(s.faultSeed.map(String.init) ?? "-")):")
            lines.append("  dropped bytes \(f.droppedBytes), flipped bits \(f.flippedBits), stalls \(f.stalls), "
                         + "disconnects \(f.disconnects), resets \(f.resets)")
        }
        return lines.joined(separator: "\n")
    }

    /// One line per eFuse field: `BLOCKn NAME VALUE [write-protected] [read-protected]`.
    public static func efuseText(_ fields: [DeviceInspector.FieldValue]) -> String {
        fields.map { f in
            let flags = (f.writeProtected ? " [write-protected]" : "") + (f.readProtected ? " [read-protected]" : "")
            return "BLOCK\(f.block) \(f.name.padding(toLength: 22, withPad: " ", startingAt: 0)) \(f.value)\(flags)"
        }.joined(separator: "\n")
    }
}
