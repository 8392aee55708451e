import ESPCore
import Foundation

/// A flasher stub in esptool's JSON format: base64 `text` loaded at `text_start`, optional
/// base64 `data` at `data_start`, and the `entry` point.
public struct StubImage: Sendable, Equatable {
    public var text: [UInt8]
    public var textStart: UInt32
    public var data: [UInt8]
    public var dataStart: UInt32
    public var entry: UInt32
    public var source: String

    public init(text: [UInt8], textStart: UInt32, data: [UInt8], dataStart: UInt32, entry: UInt32, source: String) {
        self.text = text
        self.textStart = textStart
        self.data = data
        self.dataStart = dataStart
        self.entry = entry
        self.source = source
    }

    /// Parses the JSON; throws ``FlasherError/stubInvalid`` with the reason.
    public static func parse(json: [UInt8], source: String) throws -> StubImage {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
            throw FlasherError.stubInvalid(source, "not a JSON object")
        }
        func number(_ k: String) throws -> UInt32 {
            guard let n = obj[k] as? NSNumber, n.int64Value >= 0, n.int64Value <= Int64(UInt32.max) else {
                throw FlasherError.stubInvalid(source, "missing or bad '\(k)'")
            }
            return UInt32(n.int64Value)
        }
        guard let t = obj["text"] as? String, let text = Data(base64Encoded: t), !text.isEmpty else {
            throw FlasherError.stubInvalid(source, "missing or bad base64 'text'")
        }
        var data: [UInt8] = []
        var dataStart: UInt32 = 0
        if let d = obj["data"] as? String {
            guard let bytes = Data(base64Encoded: d) else { throw FlasherError.stubInvalid(source, "bad base64 'data'") }
            data = [UInt8](bytes)
            dataStart = try number("data_start")
        }
        return StubImage(text: [UInt8](text), textStart: try number("text_start"), data: data, dataStart: dataStart,
                         entry: try number("entry"), source: source)
    }

    /// Finds `esp32.json` inside an installed esptool package: `$ESPFORGE_ESPTOOL_STUBS`, the
    /// oracle venv (`$ESPFORGE_ORACLE/../lib/python*/site-packages`), then `python3 -c 'import esptool'`.
    /// Subfolder "2" (current stub) before "1" (legacy), as esptool searches.
    public static func locate(chip: String = "esp32") -> String? {
        var stubDirs: [String] = []
        let env = ProcessInfo.processInfo.environment
        if let d = env["ESPFORGE_ESPTOOL_STUBS"], !d.isEmpty { stubDirs.append(d) }
        var venvBins: [String] = []
        if let o = env["ESPFORGE_ORACLE"], !o.isEmpty { venvBins.append(o) }
        venvBins.append("/tmp/oracle-venv/bin")
        for bin in venvBins {
            let lib = URL(fileURLWithPath: bin).deletingLastPathComponent().appendingPathComponent("lib").path
            if let pys = try? FileManager.default.contentsOfDirectory(atPath: lib) {
                for py in pys.sorted() where py.hasPrefix("python") {
                    stubDirs.append("\(lib)/\(py)/site-packages/esptool/targets/stub_flasher")
                }
            }
        }
        if let found = search(stubDirs, chip: chip) { return found }
        if let pkg = pythonEsptoolLocation() {
            return search([pkg + "/targets/stub_flasher"], chip: chip)
        }
        return nil
    }

    private static func search(_ dirs: [String], chip: String) -> String? {
        for d in dirs {
            for sub in ["2", "1", ""] {
                let p = sub.isEmpty ? "\(d)/\(chip).json" : "\(d)/\(sub)/\(chip).json"
                if FileManager.default.isReadableFile(atPath: p) { return p }
            }
        }
        return nil
    }

    private static func pythonEsptoolLocation() -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import esptool, os; print(os.path.dirname(esptool.__file__))"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        // Bounded raw read (FileHandle's read-to-end traps on EINTR and has no limit).
        let data = (try? BoundedFile.read(fd: out.fileHandleForReading.fileDescriptor, name: "python3 output", limit: .configText)) ?? []
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        let s = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return s.isEmpty ? nil : s
    }
}
