import ESPCore

/// `ADDR FILE [ADDR FILE ...]` as the flash commands take them: each file read whole (bounded by
/// the largest flash) into a region named after the file.
public enum FlashRegionFiles {
    public static func read(pairs args: [String]) throws -> [FlashRegion] {
        guard !args.isEmpty, args.count % 2 == 0 else {
            throw UsageError("expected ADDR FILE pairs", hint: "e.g. 0x1000 bootloader.bin 0x8000 partition-table.bin")
        }
        return try stride(from: 0, to: args.count, by: 2).map { i in
            guard let a = NumberParsing.integer(args[i]), a >= 0, a < 1 << 30 else {
                throw UsageError("'\(args[i])' is not a flash address", hint: "e.g. 0x10000")
            }
            return FlashRegion(address: a, data: try BoundedFile.read(args[i + 1], limit: .flashContents), name: args[i + 1])
        }
    }
}
