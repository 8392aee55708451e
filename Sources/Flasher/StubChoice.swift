import Foundation
import ESPCore

/// Which loader a command talks to and why: the flasher stub from `--stub FILE`, else one found
/// by ``StubLocator`` (no process is started), else the ROM loader. Encodes as the `--json`
/// event `{"event":"stub","loader":…,"path":…,"found_by":…,"reason":…,"searched":[…]}`.
public struct StubChoice: Encodable, Sendable {
    public let event = "stub"
    /// `stub` or `rom`.
    public var loader: String
    public var path: String?
    public var foundBy: String?
    /// Why the ROM loader is used.
    public var reason: String?
    public var searched: [String]?
    /// The chip the stub was looked up for, once the session detected it (nil: chosen up front).
    public var chip: String?
    /// The stub to upload (nil: the ROM loader).
    public var stub: StubImage?

    enum CodingKeys: String, CodingKey {
        case event, loader, path, foundBy = "found_by", reason, searched, chip
    }

    init(loader: String, path: String? = nil, foundBy: String? = nil) {
        self.loader = loader; self.path = path; self.foundBy = foundBy
    }

    /// The stub for `--stub path` / `--no-stub`, else the first of `chip`'s stubs
    /// (``SessionChipFacts/stubName``) found in the known places; an
    /// error when `$ESPFORGE_STUB` names a file that is not there or a stub file does not parse.
    public static func resolve(path: String?, noStub: Bool = false, chip: String = "esp32") throws -> StubChoice {
        var choice = StubChoice(loader: "rom")
        if noStub {
            choice.reason = "--no-stub"
        } else if let path {
            choice = StubChoice(loader: "stub", path: path, foundBy: "--stub")
            choice.stub = try StubImage.parse(json: try BoundedFile.read(path, limit: .stubJSON), source: path)
        } else {
            let search = StubLocator.search(chip: chip)
            if let missing = search.missingExplicit {
                throw FlasherError.stubMissing("$ESPFORGE_STUB names '\(missing)', which is not a readable file")
            }
            if let found = search.found {
                choice = StubChoice(loader: "stub", path: found.path, foundBy: found.foundBy)
                choice.stub = try StubImage.parse(json: try BoundedFile.read(found.path, limit: .stubJSON), source: found.path)
            } else {
                choice.reason = "no esptool stub found in \(search.searched.count) places (set $ESPFORGE_STUB, "
                    + "pass --stub FILE, or install esptool in the active virtualenv)"
                choice.searched = search.searched
            }
        }
        return choice
    }

    /// The stub for the chip a session detected (``SessionChipFacts/stubName``), as ``resolve``
    /// finds it without `--stub` / `--no-stub`; the line then names the chip and the stub's file.
    public static func resolve(forChip chip: String) throws -> StubChoice {
        var choice = try resolve(path: nil, chip: chip)
        choice.chip = chip
        return choice
    }

    /// The line a command prints on stderr (terminal-safe, with its newline): `stub: PATH (from
    /// HOW)` or `stub: none, using the ROM loader: WHY`.
    public var line: String {
        // A long path is shortened in the middle on a terminal: the chip's stub file is named first.
        let forChip = chip.map { c in
            (path.map { URL(fileURLWithPath: $0).lastPathComponent + " " } ?? "") + "for the \(ChipSpec.named(c)?.displayName ?? c)"
        }
        if let path {
            return "stub: " + (forChip.map { Diagnostic.terminalSafe($0) + ": " } ?? "")
                + Diagnostic.terminalSafe("\(path) (from \(foundBy ?? "?"))") + "\n"
        }
        return "stub: none" + (forChip.map { " " + Diagnostic.terminalSafe($0) } ?? "") + ", using the ROM loader: "
            + Diagnostic.terminalSafe(reason ?? "") + "\n"
    }
}

/// Flash progress for people: one line per device (redrawn in place on a terminal, else one
/// printed line per event) and findings on stderr. The `--json` form is the events themselves.
public struct FlashProgressBoard: Sendable {
    /// What to do with an event.
    public enum Output: Sendable, Equatable {
        case none
        /// Print this line (standard output).
        case line(String)
        /// Write these bytes to the terminal as they are (cursor movements included).
        case redraw(String)
        /// Write this to standard error.
        case stderr(String)
    }

    public let devices: [String]
    /// Whether standard output is a terminal (redraw in place).
    public let redraws: Bool
    private var lines: [String: String] = [:]
    private var drawn = 0

    public init(devices: [String], redraws: Bool) {
        self.devices = devices
        self.redraws = redraws
    }

    public mutating func take(_ e: FlashEvent) -> Output {
        let where_ = e.address.map { NumberParsing.hex($0) } ?? ""
        switch e.event {
        case "progress":
            let pct = (e.size ?? 0) > 0 ? 100 * (e.done ?? 0) / max(1, e.size ?? 1) : 0
            lines[e.device] = "\(where_) \(pct)%"
            return redraws ? .redraw(redraw()) : .none
        case "finding":
            return .stderr(Diagnostic.terminalSafe("\(e.device): \(e.detail ?? "")") + "\n")
        case "connected", "stub", "reconnect", "retry", "keep":
            lines[e.device] = "\(e.event): \(e.detail ?? "")"
        case "written", "unchanged", "verified", "mismatch", "erased":
            lines[e.device] = "\(where_) \(e.event) (\(e.size ?? 0) bytes\(e.detail.map { ", " + $0 } ?? ""))"
        case "done": lines[e.device] = "done"
        case "failed": lines[e.device] = "FAILED: \(e.detail ?? "")"
        default: lines[e.device] = e.event
        }
        return redraws ? .redraw(redraw()) : .line("\(e.device): \(lines[e.device] ?? "")")
    }

    private mutating func redraw() -> String {
        var out = drawn > 0 ? "\u{1B}[\(drawn)A" : ""
        for d in devices { out += "\u{1B}[2K\(d): \(lines[d] ?? "…")\n" }
        drawn = devices.count
        return out
    }
}
