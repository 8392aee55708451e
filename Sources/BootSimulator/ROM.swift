import Crypto
import ESPCore
import ImageFormat
import SecureBoot

/// What the ROM handed control to.
enum ROMHandoff {
    /// An ESP-IDF second-stage bootloader (descriptor or banner text found in its segments).
    case idfBootloader
    /// Some other image the ROM loaded into RAM and started (e.g. esptool's `ram_helloworld`).
    case ramImage(entry: UInt32)
}

/// ROM phase: the ESP32 mask ROM's SPI boot path: banner, header check, Secure Boot V2 check of
/// the bootloader (ABS_DONE_1) before anything is loaded, segment loading, jump to the entry point.
///
/// Console wording and order checked line by line against the ECO3 ROM ("ets Jul 29 2019
/// 12:21:46") under Espressif's QEMU (`../shared/golden/qemu-esp32`, see
/// docs/virtual-device-fidelity.md for what is recorded and what is modelled).
enum ROMPhase {
    static let bannerECO3 = "ets Jul 29 2019 12:21:46"
    static let bannerOld = "ets Jun  8 2016 00:22:57"
    /// Where the ROM looks for the second-stage bootloader.
    static let bootOffset = 0x1000

    /// One segment as the ROM reads it: load address, length, flash offset of its data.
    struct Segment {
        var address: UInt32
        var length: Int
        var dataOffset: Int
    }

    /// The ROM stops: its halt line (the ESP32's `ets_main.c 371 `), then nothing more.
    static func halt(_ s: inout BootState, _ why: String) -> BootStop {
        s.rom(s.chip.romHaltLine)
        return BootStop(result: .romHalted, reason: why)
    }

    /// The SPI clock divider the ROM prints (`clock div:`) for the header's frequency nibble.
    static func clockDivider(_ sizeAndFrequency: UInt8) -> Int {
        switch sizeAndFrequency & 0x0F {
        case 0xF: return 1
        case 0x1: return 3
        case 0x2: return 4
        default: return 2
        }
    }

    /// The ROM's check of the bootloader's first bytes (magic 0xE9, 1–16 segments); otherwise
    /// `invalid header` lines and a stop. `cipher` names the chip's flash decryption in the reason.
    static func requireBootloaderHeader(_ s: inout BootState, _ head: [UInt8], at boot: Int, cipher: String) throws {
        let firstWord = head[0..<4].loadLE(UInt32.self)
        guard head[0] == 0xE9, head[1] >= 1, head[1] <= 16 else {
            for _ in 0..<max(1, s.config.invalidHeaderRepeats) { s.rom("invalid header: 0x\(hex8(firstWord))") }
            let at = "0x" + String(boot, radix: 16)
            let why = s.flashEncryptionEnabled
                ? "invalid bootloader header at \(at) after \(cipher) (0x\(hex8(firstWord))): plaintext bootloader on an encrypted chip, or erased flash"
                : "invalid bootloader header at \(at) (0x\(hex8(firstWord)))" + (firstWord == 0xFFFF_FFFF ? ": flash is erased" : "")
            throw BootStop(result: .romHalted, reason: why)
        }
    }

    static func run(_ s: inout BootState, resetReason: String) throws -> ROMHandoff {
        if s.chip.fieldMap != nil { return try FieldMapROMPhase.run(&s, resetReason: resetReason) }
        let boot = bootOffset
        s.rom(s.device.description.chipRevision >= 3 ? bannerECO3 : bannerOld)
        s.rom("")
        s.rom("\(resetReason),boot:0x\(String(s.config.strapping, radix: 16)) (SPI_FAST_FLASH_BOOT)")
        guard let head = s.read(boot, 24) else {
            s.rom("flash read err, 1000")
            throw halt(&s, "the flash cannot be read at 0x1000")
        }
        try requireBootloaderHeader(&s, head, at: boot, cipher: "decryption")
        s.rom("configsip: 0, SPIWP:0xee")
        s.rom("clk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00")
        let div = clockDivider(head[3])
        let entry = head[4..<8].loadLE(UInt32.self)
        let count = Int(head[1])
        let segments: [Segment]
        if s.secureBootEnabled {
            // Recorded: the raw header byte 2 as a number, then the verification of the whole
            // image before a single segment is loaded.
            s.rom("mode:\(head[2]), clock div:\(div)")
            s.rom("secure boot v2 enabled")
            segments = try segmentTable(&s, boot: boot, count: count, printing: false)
            try verifySecureBoot(&s, boot: boot, head: head, segments: segments)
            s.rom("secure boot verification succeeded")
            for seg in segments { s.rom("load:0x\(hex8(seg.address)) len:0x\(String(seg.length, radix: 16))") }
        } else {
            let modes = ["QIO", "QOUT", "DIO", "DOUT"]
            s.rom("mode:\(head[2] < 4 ? modes[Int(head[2])] : "DIO"), clock div:\(div)")
            segments = try segmentTable(&s, boot: boot, count: count, printing: true)
        }
        s.rom("entry 0x\(hex8(entry))")
        return isIDFBootloader(&s, segments) ? .idfBootloader : .ramImage(entry: entry)
    }

    /// Walks the segment headers (and reads the data). `printing`: the non-secure ROM's `load:`
    /// lines and its read-buffer note (`ho … tail … room …`).
    static func segmentTable(_ s: inout BootState, boot: Int, count: Int, printing: Bool) throws -> [Segment] {
        var out: [Segment] = []
        var pos = boot + 24
        for i in 0..<count {
            guard let sh = s.read(pos, 8) else {
                s.rom("flash read err, 1000")
                throw halt(&s, "bootloader segment \(i) header lies beyond the end of flash")
            }
            let addr = sh[0..<4].loadLE(UInt32.self)
            let len = Int(sh[4..<8].loadLE(UInt32.self))
            if printing { s.rom("load:0x\(hex8(addr)),len:\(Int32(truncatingIfNeeded: len))") }  // ROM prints %d
            guard len <= 0x40000, s.read(pos + 8, len) != nil else {
                s.rom("flash read err, 1000")
                throw halt(&s, "bootloader segment \(i) (length \(len)) cannot be read from flash")
            }
            out.append(Segment(address: addr, length: len, dataOffset: pos + 8))
            let start = pos + 8
            pos = start + len
            if printing, i + 1 < count, let note = readBufferNote(dataStart: start - boot, dataEnd: pos - boot) {
                s.rom(note)
            }
        }
        return out
    }

    /// The ROM reads a segment's data in 16-byte units; when the last unit has fewer than 8 bytes
    /// left after the data (no room for the next segment header) it prints where the data starts
    /// in that unit (`ho`), how many data bytes it holds (`tail`) and the room left. Offsets are
    /// relative to the image start. Derived from the recordings: v5.2.2 bootloader (4-byte
    /// segment starting at unit offset 8) → `ho 8 tail 4 room 4`; the seed's v4.4 bootloader (long
    /// segments ending at unit offset 12) → `ho 0 tail 12 room 4`; segments ending at unit offset
    /// 0 or 4 print nothing.
    static func readBufferNote(dataStart: Int, dataEnd: Int) -> String? {
        let used = dataEnd % 16
        guard used != 0, 16 - used < 8 else { return nil }
        let unit = dataEnd - used
        let ho = dataStart > unit ? dataStart - unit : 0
        return "ho \(ho) tail \(used - ho) room \(16 - used)"
    }

    /// ROM Secure Boot V2: SHA-256 of the image up to its 4 KiB-aligned end, signature block 0 of
    /// the sector behind it checked against the BLK2 digest. Prints the ROM's reason and
    /// `secure boot verification failed` and stops on failure.
    static func verifySecureBoot(_ s: inout BootState, boot: Int, head: [UInt8], segments: [Segment]) throws {
        let last = segments.last.map { $0.dataOffset + $0.length } ?? (boot + 24)
        var end = ((last - boot) | 15) + 1  // checksum byte, padded to 16
        if head[23] == 1 { end += 32 }
        let padded = (end + 4095) & ~4095
        s.clock += 0.008
        guard let image = s.read(boot, padded), let sector = s.read(boot + padded, SignatureSector.size) else {
            s.rom("secure boot verification failed")
            throw BootStop(result: .romHalted, reason: "ROM Secure Boot V2 check failed: the signature sector at 0x\(String(boot + padded, radix: 16)) lies beyond the end of flash")
        }
        var trusted: [UInt8] = []
        for w in s.device.efuses.readable(block: 2, layout: s.layout) { trusted.appendLE(w) }
        if let failure = SignatureCheck.romVerify(content: image, sector: sector, trustedKeyDigest: trusted) {
            s.rom(failure.romLine)
            s.rom("secure boot verification failed")
            throw BootStop(result: .romHalted, reason: "ROM Secure Boot V2 check failed: \(failure.explanation)")
        }
    }

    /// Whether the loaded image is an ESP-IDF second-stage bootloader: its first segment starts
    /// with the bootloader descriptor (v5.2+), or a loaded segment holds the bootloader's banner
    /// format text (every ESP-IDF bootloader prints `ESP-IDF … 2nd stage bootloader`).
    static func isIDFBootloader(_ s: inout BootState, _ segments: [Segment]) -> Bool {
        if let first = segments.first, first.length >= BootloaderDescriptor.size,
           let bytes = s.read(first.dataOffset, BootloaderDescriptor.size), BootloaderDescriptor(bytes[...]) != nil {
            return true
        }
        let marker = Array("2nd stage bootloader".utf8)
        for seg in segments where seg.length >= marker.count {
            guard let data = s.device.flash.read(seg.dataOffset, seg.length) else { continue }
            let bytes = s.flashEncryptionEnabled ? (s.readQuiet(seg.dataOffset, seg.length) ?? data) : data
            if contains(bytes, marker) { return true }
        }
        return false
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard let first = needle.first, haystack.count >= needle.count else { return false }
        var i = 0
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == first, haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}
