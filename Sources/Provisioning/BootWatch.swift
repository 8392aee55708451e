import Diagnostics
import ESPCore

/// Watches a device's console during its first boot: fed bytes as they arrive, it decides when
/// the app is up (the ready line), when the boot has failed (a boot loop, or a log that stopped
/// with the doctor naming a cause) and otherwise keeps waiting. Pure: no I/O, no clock — the
/// caller says how long the line has been quiet.
public struct BootWatch: Sendable {
    public enum Verdict: Sendable, Equatable {
        case watching
        case ready(line: String)
        case failed(reason: String)
    }

    /// A console line containing any of these means the app is up.
    public let readyMarkers: [String]
    /// ROM banners (power-on or reset) tolerated before a boot counts as a loop. A first boot with
    /// in-place flash encryption resets once; ROM and bootloader failures reset forever.
    public let maxBoots: Int
    public private(set) var text = ""
    public private(set) var verdict = Verdict.watching
    private var partial: [UInt8] = []
    private var boots = 0

    /// `readyLine` nil: the ESP-IDF app start lines.
    public init(readyLine: String?, defaultMarkers: [String], maxBoots: Int = 4) {
        readyMarkers = readyLine.map { [$0] } ?? defaultMarkers
        self.maxBoots = maxBoots
    }

    /// Adds console bytes; returns the verdict so far.
    @discardableResult
    public mutating func feed(_ bytes: [UInt8]) -> Verdict {
        guard verdict == .watching else { return verdict }
        partial += bytes
        while let nl = partial.firstIndex(of: 0x0A) {
            let line = String(decoding: partial[..<nl], as: UTF8.self).trimmingCharacters(in: .init(charactersIn: "\r"))
            partial.removeSubrange(...nl)
            text += line + "\n"
            if line.hasPrefix("rst:0x") { boots += 1 }
            if readyMarkers.contains(where: { line.contains($0) }) {
                verdict = .ready(line: line)
                return verdict
            }
            if boots > maxBoots {
                verdict = .failed(reason: "boot loop: \(boots) resets without the ready line")
                return verdict
            }
        }
        // Keep a runaway line (no newline) from growing without bound.
        if partial.count > BootLog.maxLineLength { text += String(decoding: partial, as: UTF8.self) + "\n"; partial = [] }
        return verdict
    }

    /// The console has been quiet for a while: if the doctor recognises a failure in what was
    /// printed, the boot has failed (a halted ROM or bootloader prints nothing more).
    public mutating func quiet() -> Verdict {
        guard verdict == .watching, !text.isEmpty else { return verdict }
        if let cause = BootDiagnosis.confidentCause(log: text + String(decoding: partial, as: UTF8.self)) {
            verdict = .failed(reason: "the console stopped: \(cause)")
        }
        return verdict
    }

    /// Everything received, including an unfinished last line.
    public var console: String { partial.isEmpty ? text : text + String(decoding: partial, as: UTF8.self) + "\n" }

    /// The app partition offset from the bootloader's "Loaded app from partition at offset 0x…" line.
    public var bootedOffset: Int? {
        let marker = "Loaded app from partition at offset "
        guard let r = text.range(of: marker, options: .backwards) else { return nil }
        let rest = text[r.upperBound...].prefix { !$0.isWhitespace }
        return NumberParsing.integer(String(rest))
    }
}
