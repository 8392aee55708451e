import Foundation

extension FleetTruth {
    /// The truth as `DIR/truth.json` holds it: pretty-printed, sorted keys, ISO 8601 times.
    public func json() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return Array(try encoder.encode(self))
    }

    /// How many boards went through the slots, the defective ones and what became of them
    /// (`truthPath`: where the JSON was written).
    public func summary(truthPath: String) -> String {
        let defective = boards.filter { $0.defect != nil }
        var lines = ["\(boards.filter { $0.inserted != nil }.count) of \(boards.count) boards went through \(slots.count) slots; "
                     + "\(defective.count) defective; truth in \(truthPath)"]
        for b in defective {
            lines.append("  slot \(b.slot + 1) \(b.mac) \(b.defect?.rawValue ?? "-") (expected \(b.expected), taken out: \(b.removal ?? "-"))")
        }
        return lines.joined(separator: "\n")
    }
}
