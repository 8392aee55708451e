import EFuse
import ESPCore

extension SecurityFuseFacts {
    /// Reads `espefuse --chip esp32s3|esp32c3 summary --format json` output (from a real chip or
    /// `--virt`): every field of `map` is set from its `raw_value` (integers as hex numbers, byte
    /// fields as hex in reading order), so WR_DIS/RD_DIS, purposes, digests and flags come out as
    /// from the chip's blocks. Read-protected blocks read as zeros, as the chip shows them.
    public init(espefuseSummary json: [String: Any], map: EFuseFieldMap) throws(PreflightInputError) {
        guard json["SPI_BOOT_CRYPT_CNT"] != nil, json["KEY_PURPOSE_0"] != nil else {
            throw .malformed("not an \(map.chip) `espefuse summary --format json` document (no SPI_BOOT_CRYPT_CNT or KEY_PURPOSE_0)")
        }
        var words = EFuseBlockWords(map: map)
        for f in map.fields {
            guard let entry = json[f.name] as? [String: Any], var raw = entry["raw_value"] as? String else { continue }
            raw = raw.lowercased()
            if raw.hasPrefix("0x") { raw.removeFirst(2) }
            if f.width > 64 {
                guard raw.count == 2 * ((f.width + 7) / 8), let bytes = [UInt8](hexString: raw) else {
                    throw .malformed("\(f.name): raw_value is not \((f.width + 7) / 8) bytes of hex")
                }
                words.setBytes(f, bytes)
            } else {
                guard let v = UInt64(raw, radix: 16) else { throw .malformed("\(f.name): raw_value '\(raw)' is not a hex number") }
                words.setInteger(f, v)
            }
        }
        self.init(fieldMap: EFuseFieldMapSummary(words: words, map: map))
    }
}
