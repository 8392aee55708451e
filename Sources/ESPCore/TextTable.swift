import Foundation

/// A plain-text table: columns padded to their widest cell, separated by two spaces, the last
/// column never padded (so lines carry no trailing blanks).
public enum TextTable {
    /// `header` then `rows`, one line each, every line prefixed with `indent`.
    public static func render(header: [String], rows: [[String]], indent: String = "") -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { i < $0.count ? $0[i].count : 0 }.max() ?? 0 }
        return all.map { row in
            indent + row.enumerated().map { i, c in
                i == row.count - 1 || i >= widths.count ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
