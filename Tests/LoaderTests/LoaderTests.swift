import ESPCore
import Loader
import TestSupport
import Testing

@Suite struct SLIPTests {
    @Test func encodeEscapesEndAndEscapeBytes() {
        #expect(SLIP.encode([0xC0, 0xDB]) == [0xC0, 0xDB, 0xDC, 0xDB, 0xDD, 0xC0])
        #expect(SLIP.encode([0x01, 0x02]) == [0xC0, 0x01, 0x02, 0xC0])
        #expect(SLIP.encode([UInt8]()) == [0xC0, 0xC0])
    }

    /// Random frames, encoded back to back with junk in between, decode to the same frames
    /// whether fed byte by byte or in random chunks.
    @Test func decoderIsIndependentOfChunking() {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for round in 0..<30 {
            var frames: [[UInt8]] = []
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                // Bias towards the special bytes.
                let n = Int.random(in: 1...300, using: &rng)
                let f: [UInt8] = (0..<n).map { _ in
                    switch Int.random(in: 0..<6, using: &rng) {
                    case 0: 0xC0
                    case 1: 0xDB
                    case 2: 0xDC
                    default: UInt8.random(in: 0...255, using: &rng)
                    }
                }
                frames.append(f)
                stream += SLIP.encode(f)
            }
            var oneByOne = SLIPDecoder()
            var got1: [[UInt8]] = []
            for b in stream { if case let .frame(f)? = oneByOne.feed(byte: b) { got1.append(f) } }
            var chunked = SLIPDecoder()
            var got2: [[UInt8]] = []
            var i = 0
            while i < stream.count {
                let n = min(stream.count - i, Int.random(in: 1...97, using: &rng))
                got2 += chunked.frames(stream[i..<(i + n)])
                i += n
            }
            #expect(got1 == frames, "seed \(seed) round \(round)")
            #expect(got2 == frames, "seed \(seed) round \(round)")
        }
    }

    @Test func junkBetweenFramesIsReportedAndDropped() {
        var d = SLIPDecoder()
        let events = d.feed(Array("ets Jun".utf8) + SLIP.encode([1, 2, 3]))
        #expect(events == [.junk(Array("ets Jun".utf8)), .frame([1, 2, 3])])
    }

    @Test func backToBackDelimitersGiveEmptyFrame() {
        var d = SLIPDecoder()
        #expect(d.frames([0xC0, 0xC0, 0x05, 0xC0]) == [[], [0x05]])
    }

    @Test func invalidEscapeAbandonsFrameAndRecovers() {
        var d = SLIPDecoder()
        let events = d.feed([0xC0, 0x01, 0xDB, 0x01, 0x02, 0xC0] + SLIP.encode([9]))
        #expect(events.first == .invalidEscape(0x01))
        #expect(events.contains(.frame([9])))
    }

    @Test func oversizedFrameIsAbandoned() {
        var d = SLIPDecoder(maxFrameLength: 10)
        let events = d.feed(SLIP.encode([UInt8](repeating: 7, count: 20)) + SLIP.encode([1]))
        #expect(events.contains(.oversized))
        #expect(events.last == .frame([1]))
    }

    @Test func survivesRandomBytes() {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        var d = SLIPDecoder(maxFrameLength: 512)
        for _ in 0..<50 {
            let bytes = rng.bytes(Int.random(in: 0...2000, using: &rng))
            for case let .frame(f) in d.feed(bytes) {
                #expect(f.count <= 512, "seed \(seed)")
                _ = try? CommandPacket.decode(f)
                _ = try? ResponsePacket.decode(f)
            }
        }
    }
}

@Suite struct PacketTests {
    @Test func checksumMatchesProtocolExamples() {
        #expect(LoaderProtocol.checksum([0x41, 0x42]) == 0xEC)
        #expect(LoaderProtocol.checksum([UInt8](repeating: 0xFF, count: 1024)) == 0xEF)
        #expect(LoaderProtocol.checksum([UInt8]()) == 0xEF)
    }

    @Test func commandRoundTrip() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for _ in 0..<40 {
            let op = Opcode.allCases.randomElement(using: &rng)!
            let p = CommandPacket(op, data: rng.bytes(Int.random(in: 0...600, using: &rng)),
                                  checksum: UInt32.random(in: 0...0xFF, using: &rng))
            let wire = SLIP.encode(p.encode())
            var d = SLIPDecoder()
            let frames = d.frames(wire)
            #expect(frames.count == 1, "seed \(seed)")
            #expect(try CommandPacket.decode(frames[0]) == p, "seed \(seed)")
        }
    }

    @Test func syncRequestBytes() {
        let p = CommandPacket(.sync, data: LoaderProtocol.syncPayload)
        #expect(Array(p.encode().prefix(8)) == [0x00, 0x08, 0x24, 0x00, 0, 0, 0, 0])
        #expect(p.encode().count == 44)
    }

    @Test func dataBlockHeaderAndChecksum() throws {
        let p = CommandPacket.dataBlock(.flashData, sequence: 3, payload: [0x41, 0x42])
        #expect(p.word(0) == 2)
        #expect(p.word(1) == 3)
        #expect(p.checksum == 0xEC)
        #expect(p.data.count == 18)
    }

    @Test func responseRoundTripAndStatus() throws {
        let rom = ResponsePacket(opcode: 0x0A, value: 0x00F0_1D83, output: [], error: nil, statusLength: 4)
        #expect(rom.encode() == [0x01, 0x0A, 0x04, 0x00, 0x83, 0x1D, 0xF0, 0x00, 0, 0, 0, 0])
        let back = try ResponsePacket.decode(rom.encode())
        #expect(back == rom)
        let failed = ResponsePacket(opcode: 0x14, output: [], error: .invalidMessage, statusLength: 4)
        #expect(failed.status()! == (1, 5))
        let md5 = ResponsePacket(opcode: 0x13, output: [UInt8](repeating: 0x61, count: 32), statusLength: 2)
        #expect(md5.status(outputLength: 32)! == (0, 0))
        #expect(md5.data.count == 34)
    }

    @Test func decodeRejectsBadPackets() {
        #expect(throws: PacketError.tooShort(3)) { try CommandPacket.decode([0, 1, 2]) }
        #expect(throws: PacketError.wrongDirection(1)) { try CommandPacket.decode([1, 8, 0, 0, 0, 0, 0, 0]) }
        #expect(throws: PacketError.sizeMismatch(declared: 4, actual: 1)) {
            try CommandPacket.decode([0, 8, 4, 0, 0, 0, 0, 0, 9])
        }
        #expect(throws: PacketError.wrongDirection(0)) { try ResponsePacket.decode([0, 8, 0, 0, 0, 0, 0, 0]) }
    }
}
