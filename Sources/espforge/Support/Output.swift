import ESPCore

/// Printing helpers: machine-readable JSON with stable key order.
enum Output {
    static func json<T: Encodable>(_ value: T) throws -> String { try JSONText.render(value) }

    static func printJSON<T: Encodable>(_ value: T) throws {
        print(try json(value))
    }
}

extension String {
    /// Right-aligns in `n` columns (table cells).
    func leftPad(_ n: Int) -> String { String(repeating: " ", count: max(0, n - count)) + self }
}
