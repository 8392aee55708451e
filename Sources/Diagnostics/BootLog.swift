import ESPCore
import Foundation

/// A boot log as a serial monitor captured it, cleaned into lines: ANSI colour codes and other
/// control characters removed, CRLF / CR line ends split, ROM banners that another line ran into
/// (`...boot:0x1e (SPets Jul 29 2019 12:21:46`) put on a line of their own, addr2line
/// annotations (`0x40080400: _init at ??:?`) marked, and ESP-IDF log lines
/// (`E (459) secure_boot_v2: ...`) split into level, time, tag and message.
public struct BootLog: Sendable {
    public struct Line: Sendable, Equatable, Codable {
        /// 1-based line number in the input (several cleaned lines can share one).
        public var number: Int
        /// The line without colour codes and control characters.
        public var text: String
        /// `E`, `W`, `I`, `D`, `V` for ESP-IDF log lines.
        public var level: String?
        public var timeMs: Int?
        public var tag: String?
        /// The text after `tag: ` for ESP-IDF log lines, else the whole text.
        public var message: String
        /// An addr2line / monitor annotation, not output of the chip.
        public var isAnnotation: Bool
    }

    public var lines: [Line]

    /// Longest line kept (longer ones are cut; a boot log line is never this long).
    public static let maxLineLength = 2048

    public init(bytes: [UInt8]) {
        self.init(text: String(decoding: bytes, as: UTF8.self))
    }

    public init(text: String) {
        var out: [Line] = []
        var number = 0
        for physical in TextLines.split(text) {
            number += 1
            let cleaned = Self.clean(physical)
            for piece in Self.splitBanners(cleaned) {
                let trimmed = piece.trimmingTrailingSpaces()
                if trimmed.isEmpty { continue }
                out.append(Self.parse(trimmed, number: number))
            }
        }
        lines = out
    }

    /// Removes ANSI escape sequences (CSI `ESC [ … final`, and two-byte `ESC x`) and control
    /// characters other than tab; caps the length.
    static func clean(_ s: Substring) -> String {
        var out = String.UnicodeScalarView()
        var it = s.unicodeScalars.makeIterator()
        var count = 0
        while let u = it.next() {
            if u.value == 0x1B {
                guard let next = it.next() else { break }
                if next == "[" {
                    // Parameters and intermediates until a final byte 0x40…0x7E.
                    while let p = it.next() {
                        if (0x40...0x7E).contains(p.value) { break }
                    }
                }
                continue
            }
            if u.value < 0x20 && u != "\t" { continue }
            if u.value == 0x7F || (0x80...0x9F).contains(u.value) || u.value == 0xFFFD { continue }
            out.append(u == "\t" ? " " : u)
            count += 1
            if count >= maxLineLength { break }
        }
        return String(out)
    }

    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Puts a ROM banner (`ets Jul 29 2019 …`, `ESP-ROM:`) that starts in the middle of a line on
    /// a line of its own; the cut-off start stays as a line of its own too.
    static func splitBanners(_ s: String) -> [String] {
        var pieces: [String] = []
        var rest = Substring(s)
        while true {
            var cut: Substring.Index?
            var search = rest.index(rest.startIndex, offsetBy: 1, limitedBy: rest.endIndex) ?? rest.endIndex
            while search < rest.endIndex, let r = rest[search...].range(of: "ets ") {
                let after = rest[r.upperBound...]
                if months.contains(where: { after.hasPrefix($0 + " ") }) { cut = r.lowerBound; break }
                search = r.upperBound
            }
            if cut == nil, let r = rest.dropFirst().range(of: "ESP-ROM:") { cut = r.lowerBound }
            guard let c = cut else { break }
            pieces.append(String(rest[rest.startIndex..<c]))
            rest = rest[c...]
        }
        pieces.append(String(rest))
        return pieces
    }

    static func parse(_ text: String, number: Int) -> Line {
        let annotation = isAddr2line(text)
        if !annotation, let p = parseIDF(text) {
            return Line(number: number, text: text, level: p.level, timeMs: p.time, tag: p.tag, message: p.message,
                        isAnnotation: false)
        }
        return Line(number: number, text: text, level: nil, timeMs: nil, tag: nil, message: text, isAnnotation: annotation)
    }

    /// `0x40080400: _init at ??:?` or `0x400d1234: app_main at /x/main.c:12`.
    static func isAddr2line(_ t: String) -> Bool {
        let u = Array(t.utf8)
        guard u.count > 12, u[0] == UInt8(ascii: "0"), u[1] == UInt8(ascii: "x") else { return false }
        var i = 2
        while i < u.count, isHex(u[i]) { i += 1 }
        guard i >= 6, i < u.count, u[i] == UInt8(ascii: ":") else { return false }
        return t.contains(" at ")
    }

    static func isHex(_ c: UInt8) -> Bool {
        (0x30...0x39).contains(c) || (0x41...0x46).contains(c) || (0x61...0x66).contains(c)
    }

    /// `L (123) tag: message`, possibly preceded by noise on the same line.
    static func parseIDF(_ t: String) -> (level: String, time: Int, tag: String, message: String)? {
        let u = Array(t.utf8)
        var start = 0
        while start + 4 < u.count {
            if let r = parseIDF(u, at: start) { return r }
            start += 1
            // Only look a little way in: log lines start at the line start or after short noise.
            if start > 64 { break }
        }
        return nil
    }

    static func parseIDF(_ u: [UInt8], at s: Int) -> (level: String, time: Int, tag: String, message: String)? {
        let levels: [UInt8] = Array("EWIDV".utf8)
        guard s + 4 < u.count, levels.contains(u[s]), u[s + 1] == 0x20, u[s + 2] == UInt8(ascii: "(") else { return nil }
        if s > 0, isAlnum(u[s - 1]) { return nil }
        var i = s + 3
        var time = 0
        var digits = 0
        while i < u.count, (0x30...0x39).contains(u[i]), digits < 12 { time = time * 10 + Int(u[i] - 0x30); i += 1; digits += 1 }
        guard digits > 0, i + 1 < u.count, u[i] == UInt8(ascii: ")"), u[i + 1] == 0x20 else { return nil }
        i += 2
        let tagStart = i
        while i < u.count, u[i] != UInt8(ascii: ":"), u[i] != 0x20 { i += 1 }
        guard i < u.count, u[i] == UInt8(ascii: ":"), i > tagStart else { return nil }
        let tag = String(decoding: u[tagStart..<i], as: UTF8.self)
        i += 1
        if i < u.count, u[i] == 0x20 { i += 1 }
        let message = String(decoding: u[min(i, u.count)...], as: UTF8.self)
        return (String(UnicodeScalar(u[s])), time, tag, message)
    }

    static func isAlnum(_ c: UInt8) -> Bool {
        (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c)
    }

    /// Lines the chip printed (annotations excluded).
    public var chipLines: [Line] { lines.filter { !$0.isAnnotation } }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while let l = s.last, l == " " { s = s.dropLast() }
        return String(s)
    }
}
