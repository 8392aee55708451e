import ESPCore
import Foundation

/// Printing helpers: machine-readable JSON with stable key order.
enum Output {
    static func json<T: Encodable>(_ value: T) throws -> String { try JSONText.render(value) }

    static func printJSON<T: Encodable>(_ value: T) throws {
        print(try json(value))
    }

    /// One compact JSON object (for event streams).
    static func jsonLine<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

extension String {
    /// Right-aligns in `n` columns (table cells).
    func leftPad(_ n: Int) -> String { String(repeating: " ", count: max(0, n - count)) + self }
}
