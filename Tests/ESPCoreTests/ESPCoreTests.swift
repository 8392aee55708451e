import ESPCore
import Testing

@Suite struct CRC32Tests {
    @Test func checkValue() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
    }

    @Test func incrementalEqualsWhole() {
        let a = Array("hello, ".utf8), b = Array("world".utf8)
        #expect(CRC32.update(CRC32.checksum(a), b) == CRC32.checksum(a + b))
    }
}

@Suite struct NumberParsingTests {
    @Test func sizes() {
        #expect(NumberParsing.size("4MB") == 4 << 20)
        #expect(NumberParsing.size("0x1000") == 4096)
        #expect(NumberParsing.size("24K") == 24 * 1024)
        #expect(NumberParsing.size("1m") == 1 << 20)
        #expect(NumberParsing.size("12") == 12)
        #expect(NumberParsing.size("4XB") == nil)
        #expect(NumberParsing.size("-1") == nil)
        #expect(NumberParsing.size("") == nil)
    }

    @Test func integers() {
        #expect(NumberParsing.integer("0x1F") == 31)
        #expect(NumberParsing.integer(" 42 ") == 42)
        #expect(NumberParsing.integer("-5") == -5)
        #expect(NumberParsing.integer("0xZZ") == nil)
        // A second sign after the prefix or the first one (the long fuzz run's flasher-args crash:
        // "-0o-1000000000000000000000" negated Int.min and trapped).
        #expect(NumberParsing.integer("-0o-1000000000000000000000") == nil)
        #expect(NumberParsing.integer("--5") == nil)
        #expect(NumberParsing.integer("0x-10") == nil)
        #expect(NumberParsing.integer("+7") == nil)
        #expect(NumberParsing.integer("-0o17") == -15)
    }
}

@Suite struct ByteReaderTests {
    @Test func truncatedNamesOffset() throws {
        var r = ByteReader([1, 2, 3])
        #expect(throws: ByteReaderError.truncated(offset: 0, needed: 4, what: "u32")) { try r.u32() }
        #expect(try r.u16() == 0x0201)
        #expect(throws: ByteReaderError.truncated(offset: 2, needed: 2, what: "u16")) { try r.u16() }
    }

    @Test func hexRoundTrip() {
        let b: [UInt8] = [0x00, 0xAB, 0x10, 0xFF]
        #expect(b.hexString == "00ab10ff")
        #expect([UInt8](hexString: "00AB10ff") == b)
        #expect([UInt8](hexString: "abc") == nil)
        #expect([UInt8](hexString: "zz") == nil)
    }
}

@Suite struct ChipTableTests {
    @Test func lookup() throws {
        let esp32 = try #require(ChipSpec.named("ESP32"))
        #expect(esp32.bootloaderOffset == 0x1000)
        #expect(esp32.flashSize(named: "4MB")?.code == 0x20)
        #expect(esp32.flashFrequency(named: "80m")?.code == 0xF)
        #expect(esp32.flashMode(named: "dio")?.code == 2)
        #expect(esp32.isFlashMapped(0x400D_0020))
        #expect(esp32.isFlashMapped(0x3F40_0020))
        #expect(!esp32.isFlashMapped(0x4008_0000))
        #expect(ChipSpec.named("esp32-s3")?.imageChipID == 9)
        #expect(ChipSpec.withImageChipID(5)?.name == "esp32c3")
        #expect(ChipSpec.named("esp8266") == nil)
    }
}

@Suite struct TextLinesTests {
    @Test func splitsOnEveryTerminator() {
        #expect(TextLines.split("a\nb\r\nc\rd") == ["a", "b", "c", "d"])
        #expect(TextLines.split("a\n\nb\n") == ["a", "", "b"])
        #expect(TextLines.split("") == [])
        #expect(TextLines.split("\n") == [""])
    }
}
