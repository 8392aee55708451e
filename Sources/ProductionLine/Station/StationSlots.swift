import ESPCore

extension StationSlot {
    /// The station's slots from the command line's `--port` values (`PORT` or `NAME=PORT`;
    /// unnamed slots are S1, S2, … by position), else from the manifest's [station] slots.
    /// Refuses: no slots at all, a port or name given twice, and a plain `virtual:DIR` (a board
    /// that cannot be taken out; `virtual:DIR?lines=auto` can).
    public static func parse(ports: [String], manifestSlots: [(name: String, port: String)]) throws -> [StationSlot] {
        var slots: [StationSlot] = []
        if ports.isEmpty {
            slots = manifestSlots.map { StationSlot(name: $0.name, port: $0.port) }
            guard !slots.isEmpty else {
                throw UsageError("no slots: give --port (repeat for each slot) or [station] slots in the manifest",
                                 hint: "e.g. --port A1=/dev/ttyUSB0, or slots = [{ name = \"A1\", port = \"/dev/ttyUSB0\" }]")
            }
        } else {
            for (i, p) in ports.enumerated() {
                if let eq = p.firstIndex(of: "="), !p.hasPrefix("virtual:"), !p.hasPrefix("socket:"), !p.hasPrefix("/") {
                    let name = String(p[..<eq]), port = String(p[p.index(after: eq)...])
                    guard !name.isEmpty, !port.isEmpty else { throw UsageError("--port '\(p)' is not NAME=PORT") }
                    slots.append(StationSlot(name: name, port: port))
                } else {
                    slots.append(StationSlot(name: "S\(i + 1)", port: p))
                }
            }
        }
        guard Set(slots.map(\.port)).count == slots.count else { throw UsageError("the same port is given to two slots") }
        guard Set(slots.map(\.name)).count == slots.count else { throw UsageError("the same slot name is given twice") }
        guard !slots.contains(where: { $0.port.hasPrefix("virtual:") && !$0.port.contains("?") }) else {
            throw UsageError("a station slot needs a link a board can be taken out of",
                             hint: "use a serial port, socket://HOST:PORT (e.g. `espforge device fleet`) or virtual:DIR?lines=auto")
        }
        return slots
    }
}
