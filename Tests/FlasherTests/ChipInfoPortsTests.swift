import Flasher
import Foundation
import Testing
import TestSupport
import VirtualDevice

@Suite("chip info over several ports")
struct ChipInfoPortsTests {
    @Test("every port is read and reported under its name; one bad port fails the run, not the others")
    func severalPorts() throws {
        let root = try TestEnvironment.temporaryDirectory("espforge-chipinfo-ports")
        defer { try? FileManager.default.removeItem(at: root) }
        var ports: [String] = []
        for (i, mac) in ["24:0a:c4:00:00:11", "24:0a:c4:00:00:12"].enumerated() {
            let dir = root.appendingPathComponent("dev\(i)").path
            try DeviceStore(directory: dir).create(try Device.create(DeviceDescription(mac: mac)), force: false)
            ports.append("virtual:" + dir)
        }
        let ok = try Espforge.run(["chip", "info", "--json"] + ports.flatMap { ["--port", $0] })
        #expect(ok.status == 0, "\(ok.err)")
        let rows = try ok.out.split(separator: "\n").map { try JSONDecoder().decode(PortChipInfo.self, from: Data($0.utf8)) }
        #expect(rows.map(\.port) == ports)
        #expect(rows.map { $0.info?.mac } == ["24:0a:c4:00:00:11", "24:0a:c4:00:00:12"])

        let bad = "virtual:" + root.appendingPathComponent("missing").path
        let mixed = try Espforge.run(["chip", "info", "--port", ports[0], "--port", bad])
        #expect(mixed.status == 1)
        #expect(mixed.out.contains("== \(ports[0])") && mixed.out.contains("MAC:          24:0a:c4:00:00:11"), "\(mixed.out)")
        #expect(mixed.out.contains("== \(bad)\nFAILED: "), "\(mixed.out)")
    }
}
