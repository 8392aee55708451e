/// The largest input each format can legitimately have. Readers check a file's size against its
/// limit before reading a byte, so a wrong file (a 3 GB disk image, `/dev/zero`) ends in a clear
/// error instead of an allocation failure. docs/robustness.md lists the table.
public struct InputLimit: Sendable, Equatable, CustomStringConvertible {
    /// What the input is, with an article: "a firmware image".
    public let what: String
    public let maxBytes: Int
    /// Why this is the limit (shown in the error).
    public let reason: String

    public init(_ what: String, maxBytes: Int, reason: String) {
        self.what = what
        self.maxBytes = maxBytes
        self.reason = reason
    }

    public var description: String { "\(what): at most \(ByteCount.format(maxBytes))" }

    /// The largest flash any supported chip addresses (from the chip tables: 128 MiB).
    public static let largestFlash: Int = ChipSpec.all.flatMap(\.flashSizes).map(\.value).max() ?? (16 << 20)

    /// A firmware image (bootloader, app), anything flashed, a flash dump: no larger than the flash.
    public static let flashContents = InputLimit("a flash image", maxBytes: largestFlash,
                                                 reason: "the largest flash of the supported chips")
    /// An ELF file (with debug information it can be much larger than the image it produces).
    public static let elf = InputLimit("an ELF file", maxBytes: 512 << 20,
                                       reason: "far beyond any ESP-IDF application with debug information")
    /// A partition table: a binary is one 0xC00-byte table in its 4 KiB sector; a CSV is a few lines.
    public static let partitionTable = InputLimit("a partition table (binary or CSV)", maxBytes: 1 << 20,
                                                  reason: "a binary table is 0xC00 bytes; a CSV a few hundred lines")
    /// An NVS partition image: no larger than the flash.
    public static let nvsPartition = InputLimit("an NVS partition image", maxBytes: largestFlash,
                                                reason: "the largest flash of the supported chips")
    /// NVS CSV files (configuration or values); values may carry hex/base64 blobs.
    public static let nvsCSV = InputLimit("an NVS CSV file", maxBytes: 16 << 20,
                                          reason: "NVS blobs are at most about 500 KB each")
    /// A file an NVS CSV refers to (`file` encoding): one NVS value.
    public static let nvsValueFile = InputLimit("a file for an NVS value", maxBytes: 4 << 20,
                                                reason: "an NVS blob is at most about 500 KB")
    /// An identity pool (values CSV with one row per device).
    public static let identityCSV = InputLimit("an identity CSV file", maxBytes: 256 << 20,
                                               reason: "about a million device rows")
    /// otadata: two 4 KiB sectors.
    public static let otadata = InputLimit("an otadata partition image", maxBytes: 1 << 20,
                                           reason: "otadata is two 4 KiB sectors")
    /// A boot log as a serial monitor captured it.
    public static let bootLog = InputLimit("a boot log", maxBytes: 16 << 20,
                                           reason: "a boot log is a few thousand lines")
    /// eFuse summary JSON (`espefuse summary --format json`).
    public static let efuseJSON = InputLimit("an eFuse summary JSON file", maxBytes: 1 << 20,
                                             reason: "an eFuse summary is a few hundred fields")
    /// The production manifest, sdkconfig, flasher_args.json, stub JSON and other small text files.
    public static let configText = InputLimit("a configuration file", maxBytes: 4 << 20,
                                              reason: "configuration files are text of a few hundred KB at most")
    /// Key files (PEM, DER or raw key bytes) and signature blocks.
    public static let key = InputLimit("a key file", maxBytes: 64 << 10,
                                       reason: "keys are at most a few KB")
    /// A flasher stub image as JSON (base64 text and data segments).
    public static let stubJSON = InputLimit("a flasher stub JSON file", maxBytes: 4 << 20,
                                            reason: "a stub is a few tens of KB")
    /// A virtual device's small state files (device.json, efuse.bin, stats.json).
    public static let deviceState = InputLimit("a device state file", maxBytes: 1 << 20,
                                               reason: "device descriptions, eFuses and statistics are small")
}

/// Human-readable byte counts for messages.
public enum ByteCount {
    /// `0x1000` → "4 KiB", `3221225472` → "3 GiB (3221225472 bytes)".
    public static func format(_ n: Int) -> String {
        let units: [(Int, String)] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, name) in units where n >= size {
            if n % size == 0 { return "\(n / size) \(name)" }
            let tenths = (n * 10 + size / 2) / size
            return "\(tenths / 10).\(tenths % 10) \(name) (\(n) bytes)"
        }
        return n == 1 ? "1 byte" : "\(n) bytes"
    }
}
