import ESPCore

extension Manifest {
    /// One place on a station's fixture: `{ name = "A1", port = "/dev/serial/by-path/…-port0" }`.
    /// A `/dev/serial/by-path` name stays the same per physical USB socket, so a slot is a place.
    public struct StationSlot: Sendable, Equatable, Codable {
        public var name: String
        public var port: String
        public init(name: String, port: String) { self.name = name; self.port = port }
    }

    /// `[station] slots = [...]` (empty when the manifest has no [station] table).
    static func decodeStation(_ r: inout TableReader) throws(ManifestError) -> [StationSlot] {
        guard let (st, at) = try r.table("station") else { return [] }
        var s = st
        var slots: [StationSlot] = []
        let example = "slots = [{ name = \"A1\", port = \"/dev/ttyUSB0\" }]"
        guard let node = s.node("slots") else {
            throw ManifestError("`station.slots` is missing", at: at, hint: "add \(example)")
        }
        guard case .array(let items) = node.value, !items.isEmpty else {
            throw ManifestError("`station.slots` must be a non-empty array of { name, port } tables", at: node.position, hint: example)
        }
        var names = Set<String>(), ports = Set<String>()
        for item in items {
            guard case .table(let t) = item.value else {
                throw ManifestError("`station.slots` must hold { name = …, port = … } tables, found \(item.value.typeName)",
                                    at: item.position, hint: example)
            }
            var slot = TableReader(t, name: "station.slots")
            let name = try slot.required(try slot.string("name"), "name")
            let port = try slot.required(try slot.string("port"), "port")
            try slot.finish()
            guard names.insert(name.0).inserted else {
                throw ManifestError("slot name `\(name.0)` is used twice", at: name.1, hint: "give every slot its own name")
            }
            guard ports.insert(port.0).inserted else {
                throw ManifestError("port `\(port.0)` is given to two slots", at: port.1, hint: "one port per slot")
            }
            slots.append(StationSlot(name: name.0, port: port.0))
        }
        try s.finish()
        return slots
    }
}
