import Foundation

/// Printing helpers: machine-readable JSON with stable key order.
enum Output {
    static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        return String(decoding: data, as: UTF8.self)
    }

    static func printJSON<T: Encodable>(_ value: T) throws {
        print(try json(value))
    }
}

extension String {
    /// Right-aligns in `n` columns (table cells).
    func leftPad(_ n: Int) -> String { String(repeating: " ", count: max(0, n - count)) + self }
}
