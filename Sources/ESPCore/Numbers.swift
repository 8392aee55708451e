/// Parsing of the numbers and sizes people type: `0x1000`, `4096`, `4K`, `64KB`, `4M`, `4MB`.
public enum NumberParsing {
    /// Integer in decimal or `0x` hexadecimal (also `0o`/`0b`), optional leading `-`.
    public static func integer(_ text: String) -> Int? {
        var s = Substring(text.trimmingSpaces())
        var negative = false
        if s.hasPrefix("-") { negative = true; s = s.dropFirst() }
        let lower = s.lowercased()
        let radixes: [(prefix: String, radix: Int)] = [("0x", 16), ("0o", 8), ("0b", 2)]
        let (digits, radix) = radixes.first { lower.hasPrefix($0.prefix) }
            .map { (lower.dropFirst(2), $0.radix) } ?? (Substring(lower), 10)
        // One sign at most, in front: Swift's Int(_:radix:) would take another after the prefix
        // ("-0o-…", "--5"), and negating Int.min traps.
        guard let first = digits.first, first != "-", first != "+",
              let magnitude = Int(digits, radix: radix) else { return nil }
        guard negative else { return magnitude }
        let (v, overflow) = (0 as Int).subtractingReportingOverflow(magnitude)
        return overflow ? nil : v
    }

    /// A byte size: an integer optionally followed by `K`/`KB`/`KiB` (×1024) or `M`/`MB`/`MiB`
    /// (×1024²), case-insensitive. `4MB` → 4194304, `0x1000` → 4096, `24K` → 24576.
    public static func size(_ text: String) -> Int? {
        let t = text.trimmingSpaces().lowercased()
        let units: [(String, Int)] = [("kib", 1024), ("kb", 1024), ("k", 1024),
                                      ("mib", 1 << 20), ("mb", 1 << 20), ("m", 1 << 20)]
        if !t.hasPrefix("0x") {
            for (suffix, factor) in units where t.hasSuffix(suffix) {
                guard let n = integer(String(t.dropLast(suffix.count))), n >= 0 else { return nil }
                let (r, overflow) = n.multipliedReportingOverflow(by: factor)
                return overflow ? nil : r
            }
        }
        guard let n = integer(t), n >= 0 else { return nil }
        return n
    }

    /// `0x0001f000` style rendering.
    public static func hex(_ value: some BinaryInteger, width: Int = 8) -> String {
        let s = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, width - s.count)) + s
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" || f == "\n" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" || l == "\n" { s = s.dropLast() }
        return String(s)
    }
}
