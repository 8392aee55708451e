import ESPCore
import Flasher
import Foundation
import Testing
import TestSupport
import Transport
import VirtualDevice

/// A link that drops once it is armed and, when opened again, leads to another board: an operator
/// swapping boards in a fixture slot while the flasher reconnects.
private final class SwappingPort: ChipPort, @unchecked Sendable {
    let name: String
    let kind = PortKind.virtual
    private var inner: VirtualPort
    private let nextDirectory: String
    var armed = false

    init(name: String, first: String, next: String) throws {
        self.name = name
        inner = try VirtualPort(name: name, directory: first)
        nextDirectory = next
    }

    func write(_ bytes: [UInt8]) throws {
        if armed { throw TransportError.closed(name) }
        try inner.write(bytes)
    }
    func read(timeout: Double) throws -> [UInt8] {
        if armed { throw TransportError.closed(name) }
        return try inner.read(timeout: timeout)
    }
    func setBaud(_ baud: Int) throws { try inner.setBaud(baud) }
    func setModemLines(dtr: Bool?, rts: Bool?) throws { try inner.setModemLines(dtr: dtr, rts: rts) }
    func flushInput() { inner.flushInput() }
    func reopen() throws {
        inner.close()
        inner = try VirtualPort(name: name, directory: nextDirectory)
        armed = false
    }
    func close() { inner.close() }
}

private final class PortBox: @unchecked Sendable { var port: SwappingPort? }

@Suite struct DifferentBoardTests {
    @Test("a reconnect that finds another MAC stops the session; the new board receives nothing")
    func swappedBoardDuringReconnect() throws {
        let first = try makeDevice("swap-a", mac: "24:0a:c4:11:22:33")
        let second = try makeDevice("swap-b", mac: "24:0a:c4:aa:bb:cc")
        defer {
            try? FileManager.default.removeItem(at: first)
            try? FileManager.default.removeItem(at: second)
        }
        let box = PortBox()
        var o = options(stub: nil, baud: 115_200)
        o.ports = PortOpener(virtual: { address in
            let p = try SwappingPort(name: address.name, first: first.path, next: second.path)
            box.port = p
            return p
        })
        let session = FlashSession(port: "virtual:" + first.path, options: o)
        try session.connect()
        let region = FlashRegion(address: 0x10000, data: [UInt8](repeating: 0x5A, count: 0x4000), name: "app.bin")
        let plan = FlashSafety.check(FlashRequest(regions: [region]), facts: try #require(session.facts))
        try #require(box.port).armed = true
        var caught: FlasherError?
        do { _ = try session.write(plan) } catch let e as FlasherError { caught = e }
        guard case let .differentBoard(_, expected, found)? = caught else {
            Issue.record("expected differentBoard, got \(String(describing: caught))")
            return
        }
        #expect(expected == "24:0a:c4:11:22:33")
        #expect(found == "24:0a:c4:aa:bb:cc")
        session.finish()
        #expect(try flashContents(second).allSatisfy { $0 == 0xFF }, "the swapped-in board was written to")
    }
}
