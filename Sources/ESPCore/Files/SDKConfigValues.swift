import Foundation

/// An ESP-IDF `sdkconfig` read into `CONFIG_X` → value: the one parser every reader uses
/// (preflight's `SDKConfig`, the manifest's `IDFBuild`, the boot simulator's `SDKConfig`).
///
/// Text rules (the form ESP-IDF's kconfig tooling writes):
/// - lines end at `\n`, `\r\n` or `\r`; spaces and tabs around a line are ignored;
/// - `NAME=VALUE` sets NAME (spaces around NAME and VALUE ignored; NAME is one word). A value in
///   double quotes loses its quotes, and `\"` / `\\` inside it become `"` / `\`;
/// - `# NAME is not set` (NAME one word starting `CONFIG_`) sets NAME to `n`;
/// - the header `# Espressif IoT Development Framework (ESP-IDF) 5.1.2 Project Configuration`
///   gives ``idfVersion``;
/// - every other line is ignored, and a later setting of a name wins. Parsing never fails: the
///   consumer decides which values it needs and reports a bad one with its ``lines`` number.
///
/// `config/sdkconfig.json` (keys without `CONFIG_`) maps to the same values, booleans as `y`/`n`.
public struct SDKConfigValues: Sendable, Equatable {
    public var values: [String: String]
    /// The 1-based line each name was last set on (text form only).
    public var lines: [String: Int]
    public var idfVersion: String?

    public init(values: [String: String] = [:], lines: [String: Int] = [:], idfVersion: String? = nil) {
        self.values = values
        self.lines = lines
        self.idfVersion = idfVersion
    }

    public subscript(_ key: String) -> String? { values[key] }

    public static func parse(text: String) -> SDKConfigValues {
        var out = SDKConfigValues()
        var lineNumber = 0
        for raw in TextLines.split(text) {
            lineNumber += 1
            let line = raw.trimmingCharacters(in: [" ", "\t"])
            if line.hasPrefix("#") {
                let body = line.dropFirst().trimmingCharacters(in: [" ", "\t"])
                let notSet = " is not set"
                if body.hasSuffix(notSet) {
                    let name = String(body.dropLast(notSet.count))
                    if name.hasPrefix("CONFIG_"), !name.contains(where: { $0 == " " || $0 == "\t" }) {
                        out.values[name] = "n"
                        out.lines[name] = lineNumber
                    }
                } else if body.hasSuffix("Project Configuration") {
                    let words = body.split(separator: " ")
                    if let i = words.firstIndex(of: "(ESP-IDF)"), i + 1 < words.count { out.idfVersion = String(words[i + 1]) }
                }
                continue
            }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let name = line[..<eq].trimmingCharacters(in: [" ", "\t"])
            guard !name.isEmpty, !name.contains(where: { $0 == " " || $0 == "\t" }) else { continue }
            var value = line[line.index(after: eq)...].trimmingCharacters(in: [" ", "\t"])
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = unescape(value.dropFirst().dropLast())
            }
            out.values[name] = value
            out.lines[name] = lineNumber
        }
        return out
    }

    /// `config/sdkconfig.json`'s object: `X` → `CONFIG_X`, booleans as `y`/`n`, numbers in decimal.
    public static func parse(json: [String: Any]) -> SDKConfigValues {
        SDKConfigValues(values: SDKConfigLookup.values(json: json))
    }

    private static func unescape(_ s: Substring) -> String {
        var out = ""
        var escaped = false
        for c in s {
            if escaped {
                if c != "\"" && c != "\\" { out.append("\\") }
                out.append(c)
                escaped = false
            }
            else if c == "\\" { escaped = true }
            else { out.append(c) }
        }
        if escaped { out.append("\\") }
        return out
    }
}

extension SDKConfigLookup.Found {
    /// The file's values (text or `sdkconfig.json`); nil when a JSON file is not a JSON object.
    public func parsed() -> SDKConfigValues? {
        switch format {
        case .text: return SDKConfigValues.parse(text: String(decoding: bytes, as: UTF8.self))
        case .json:
            guard let o = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else { return nil }
            return SDKConfigValues.parse(json: o)
        }
    }
}
