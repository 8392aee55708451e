import Foundation

/// The JSON form of every report espforge prints: pretty-printed, keys sorted, slashes not
/// escaped, so the same value always gives the same bytes (what `--json` prints).
public enum JSONText {
    public static func render<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
