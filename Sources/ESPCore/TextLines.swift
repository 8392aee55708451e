/// Line splitting for text inputs (CSV files, captured boot logs): LF, CRLF and lone CR all end a
/// line, as Python's `str.splitlines()` treats them; no empty line after a final terminator.
public enum TextLines {
    public static func split<S: StringProtocol>(_ text: S) -> [S.SubSequence] {
        var lines: [S.SubSequence] = []
        var start = text.startIndex
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            i = text.index(after: i)
            if c == "\n" || c == "\r" || c == "\r\n" {
                lines.append(text[start..<text.index(before: i)])
                start = i
            }
        }
        if start < text.endIndex { lines.append(text[start...]) }
        return lines
    }
}
