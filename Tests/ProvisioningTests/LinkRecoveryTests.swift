import EFuse
import ESPCore
import Foundation
import Testing
import TestSupport
import VirtualDevice
@testable import Provisioning

/// Issue 15 §3: eFuse burns on served S3/C3 devices over links that flip bits (seeded)
/// succeed with the fuses exactly as planned and no false stray or missing bits, while a fuse
/// that really does not burn (`--faults efuse-stuck=…`) is still reported on the same noisy link.
@Suite("S3/C3 link recovery (served devices)", .serialized)
struct LinkRecoveryTests {
    static let enabled = FieldMapLoaderLinkTests.enabled
    static let seeds: [UInt64] = [3, 11]

    @Test("field burns over a noisy link: all planned bits, nothing else",
          .enabled(if: enabled, Comment(rawValue: Oracle.skipReason)), arguments: FieldMapLoaderLinkTests.chips)
    func noisyBurnReadsBackRight(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        var faults = 0
        for seed in Self.seeds {
            let served = try FieldMapLoaderLinkTests.serve(chip, extra: ["--faults", "flip=0.001", "--seed", String(seed)], timeout: 0.5)
            defer { served.cleanup() }
            let link = try served.target.connect()
            let before = try link.readFieldMapEFuses()
            try link.burnFieldMap(.burn([(name: "DIS_PAD_JTAG", value: "1"), (name: "DIS_USB_JTAG", value: "1")]))
            link.close()
            let device = try served.stopAndLoad()
            faults += device.stats.faults.flippedBits
            let cells = try #require(device.cells)
            var expected = before
            expected.setInteger(try #require(map.field(named: "DIS_PAD_JTAG")), 1)
            expected.setInteger(try #require(map.field(named: "DIS_USB_JTAG")), 1)
            #expect(cells == expected, "seed \(seed): the fuses hold exactly the plan")
        }
        #expect(faults > 0, "the links did flip bits")
    }

    @Test("a stuck fuse is still reported over a noisy link",
          .enabled(if: enabled, Comment(rawValue: Oracle.skipReason)), arguments: FieldMapLoaderLinkTests.chips)
    func stuckFuseOverNoisyLink(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        let f = try #require(map.field(named: "DIS_PAD_JTAG"))
        let stuck = "efuse-stuck=\(f.block):\(f.startBit / 32):0x\(String(1 << (f.startBit % 32), radix: 16))"
        let served = try FieldMapLoaderLinkTests.serve(chip, extra: ["--faults", "\(stuck),flip=0.0005", "--seed", "5"], timeout: 0.5)
        defer { served.cleanup() }
        let link = try served.target.connect()
        defer { link.close() }
        #expect(throws: LinkError.burnDidNotStick(["BLOCK0 (1 of 1 bits not set)"])) {
            try link.burnFieldMap(.burn([(name: "DIS_PAD_JTAG", value: "1")]))
        }
    }
}
