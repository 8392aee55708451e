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

/// The ESP32 mask ROM's SPI boot path: banner, header check, Secure Boot V2 check of the
/// bootloader (ABS_DONE_1) before anything is loaded, segment loading, jump to the entry point.
///
/// Console wording and order checked line by line against the ECO3 ROM ("ets Jul 29 2019
/// 12:21:46") under Espressif's QEMU (`../shared/golden/qemu-esp32`, see
/// docs/virtual-device-fidelity.md for what is recorded and what is modelled).
extension BootRun {
    static let romBannerECO3 = "ets Jul 29 2019 12:21:46"
    static let romBannerOld = "ets Jun  8 2016 00:22:57"

    func romHalt(_ why: String) -> BootStop {
        rom("ets_main.c 371 ")
        return BootStop(result: .romHalted, reason: why)
    }

    /// One segment as the ROM reads it: load address, length, flash offset of its data.
    struct ROMSegment {
        var address: UInt32
        var length: Int
        var dataOffset: Int
    }

    func romStage(resetReason: String) throws -> ROMHandoff {
        let boot = 0x1000
        rom(device.description.chipRevision >= 3 ? Self.romBannerECO3 : Self.romBannerOld)
        rom("")
        rom("\(resetReason),boot:0x\(String(config.strapping, radix: 16)) (SPI_FAST_FLASH_BOOT)")
        guard let head = read(boot, 24) else {
            rom("flash read err, 1000")
            throw romHalt("the flash cannot be read at 0x1000")
        }
        let firstWord = head[0..<4].loadLE(UInt32.self)
        guard head[0] == 0xE9, head[1] >= 1, head[1] <= 16 else {
            for _ in 0..<max(1, config.invalidHeaderRepeats) { rom("invalid header: 0x\(hex8(firstWord))") }
            let why = flashEncryptionEnabled
                ? "invalid bootloader header at 0x1000 after decryption (0x\(hex8(firstWord))): plaintext bootloader on an encrypted chip, or erased flash"
                : "invalid bootloader header at 0x1000 (0x\(hex8(firstWord)))" + (firstWord == 0xFFFF_FFFF ? ": flash is erased" : "")
            throw BootStop(result: .romHalted, reason: why)
        }
        rom("configsip: 0, SPIWP:0xee")
        rom("clk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00")
        let div: Int
        switch head[3] & 0x0F {
        case 0xF: div = 1
        case 0x1: div = 3
        case 0x2: div = 4
        default: div = 2
        }
        let entry = head[4..<8].loadLE(UInt32.self)
        let count = Int(head[1])
        let segments: [ROMSegment]
        if secureBootEnabled {
            // Recorded: the raw header byte 2 as a number, then the verification of the whole
            // image before a single segment is loaded.
            rom("mode:\(head[2]), clock div:\(div)")
            rom("secure boot v2 enabled")
            segments = try romSegmentTable(boot: boot, count: count, printing: false)
            try romVerifySecureBoot(boot: boot, head: head, segments: segments)
            rom("secure boot verification succeeded")
            for s in segments { rom("load:0x\(hex8(s.address)) len:0x\(String(s.length, radix: 16))") }
        } else {
            let modes = ["QIO", "QOUT", "DIO", "DOUT"]
            rom("mode:\(head[2] < 4 ? modes[Int(head[2])] : "DIO"), clock div:\(div)")
            segments = try romSegmentTable(boot: boot, count: count, printing: true)
        }
        rom("entry 0x\(hex8(entry))")
        return isIDFBootloader(segments) ? .idfBootloader : .ramImage(entry: entry)
    }

    /// Walks the segment headers (and reads the data). `printing`: the non-secure ROM's `load:`
    /// lines and its read-buffer note (`ho … tail … room …`).
    func romSegmentTable(boot: Int, count: Int, printing: Bool) throws -> [ROMSegment] {
        var out: [ROMSegment] = []
        var pos = boot + 24
        for i in 0..<count {
            guard let sh = read(pos, 8) else {
                rom("flash read err, 1000")
                throw romHalt("bootloader segment \(i) header lies beyond the end of flash")
            }
            let addr = sh[0..<4].loadLE(UInt32.self)
            let len = Int(sh[4..<8].loadLE(UInt32.self))
            if printing { rom("load:0x\(hex8(addr)),len:\(Int32(truncatingIfNeeded: len))") }  // ROM prints %d
            guard len <= 0x40000, read(pos + 8, len) != nil else {
                rom("flash read err, 1000")
                throw romHalt("bootloader segment \(i) (length \(len)) cannot be read from flash")
            }
            out.append(ROMSegment(address: addr, length: len, dataOffset: pos + 8))
            let start = pos + 8
            pos = start + len
            if printing, i + 1 < count, let note = Self.readBufferNote(dataStart: start - boot, dataEnd: pos - boot) {
                rom(note)
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
    func romVerifySecureBoot(boot: Int, head: [UInt8], segments: [ROMSegment]) throws {
        let last = segments.last.map { $0.dataOffset + $0.length } ?? (boot + 24)
        var end = ((last - boot) | 15) + 1  // checksum byte, padded to 16
        if head[23] == 1 { end += 32 }
        let padded = (end + 4095) & ~4095
        clock += 0.008
        guard let image = read(boot, padded), let sector = read(boot + padded, SignatureSector.size) else {
            rom("secure boot verification failed")
            throw BootStop(result: .romHalted, reason: "ROM Secure Boot V2 check failed: the signature sector at 0x\(String(boot + padded, radix: 16)) lies beyond the end of flash")
        }
        var trusted: [UInt8] = []
        for w in device.efuses.readable(block: 2, layout: layout) { trusted.appendLE(w) }
        if let failure = SignatureCheck.romVerify(content: image, sector: sector, trustedKeyDigest: trusted) {
            rom(failure.romLine)
            rom("secure boot verification failed")
            throw BootStop(result: .romHalted, reason: "ROM Secure Boot V2 check failed: \(failure.explanation)")
        }
    }

    /// Whether the loaded image is an ESP-IDF second-stage bootloader: its first segment starts
    /// with the bootloader descriptor (v5.2+), or a loaded segment holds the bootloader's banner
    /// format text (every ESP-IDF bootloader prints `ESP-IDF … 2nd stage bootloader`).
    func isIDFBootloader(_ segments: [ROMSegment]) -> Bool {
        if let first = segments.first, first.length >= BootloaderDescriptor.size,
           let bytes = read(first.dataOffset, BootloaderDescriptor.size), BootloaderDescriptor(bytes[...]) != nil {
            return true
        }
        let marker = Array("2nd stage bootloader".utf8)
        for s in segments where s.length >= marker.count {
            guard let data = device.flash.read(s.dataOffset, s.length) else { continue }
            let bytes = flashEncryptionEnabled ? (readQuiet(s.dataOffset, s.length) ?? data) : data
            if Self.contains(bytes, marker) { return true }
        }
        return false
    }

    /// `read` without advancing the virtual clock (a second look at data the ROM already read).
    func readQuiet(_ address: Int, _ length: Int) -> [UInt8]? {
        let saved = clock
        defer { clock = saved }
        return read(address, length)
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
