import Crypto
import ESPCore

/// The ESP32 mask ROM's SPI boot path: banner, header check, segment loading, Secure Boot V2
/// check of the bootloader (ABS_DONE_1), jump to the entry point.
extension BootRun {
    static let romBannerECO3 = "ets Jul 29 2019 12:21:46"
    static let romBannerOld = "ets Jun  8 2016 00:22:57"

    func romHalt(_ why: String) -> BootStop {
        rom("ets_main.c 371 ")
        return BootStop(result: .romHalted, reason: why)
    }

    func romStage(resetReason: String) throws {
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
        let modes = ["QIO", "QOUT", "DIO", "DOUT"]
        let mode = head[2] < 4 ? modes[Int(head[2])] : "DIO"
        let div: Int
        switch head[3] & 0x0F {
        case 0xF: div = 1
        case 0x1: div = 3
        case 0x2: div = 4
        default: div = 2
        }
        rom("mode:\(mode), clock div:\(div)")
        var pos = boot + 24
        let count = Int(head[1])
        for i in 0..<count {
            guard let sh = read(pos, 8) else {
                rom("flash read err, 1000")
                throw romHalt("bootloader segment \(i) header lies beyond the end of flash")
            }
            let addr = sh[0..<4].loadLE(UInt32.self)
            let len = Int(sh[4..<8].loadLE(UInt32.self))
            rom("load:0x\(hex8(addr)),len:\(Int32(truncatingIfNeeded: len))")  // ROM prints %d
            guard len <= 0x40000, read(pos + 8, len) != nil else {
                rom("flash read err, 1000")
                throw romHalt("bootloader segment \(i) (length \(len)) cannot be read from flash")
            }
            pos += 8 + len
            // Observed on ECO3 ROM logs: printed when the segment ends so close to a 16-byte
            // boundary that the next segment header does not fit the read buffer.
            let tail = pos % 16
            if i + 1 < count, tail != 0, 16 - tail < 8 { rom("ho 0 tail \(tail) room \(16 - tail)") }
        }
        if secureBootEnabled {
            // ROM: digest of the bootloader up to the 4 KiB-aligned end (incl. appended hash),
            // signature block 0 checked against the BLK2 digest.
            var end = (pos - boot) | 15
            end += 1
            if head[23] == 1 { end += 32 }
            let padded = (end + 4095) & ~4095
            guard let image = read(boot, padded), let sector = read(boot + padded, 4096) else {
                rom("secure boot check fail")
                throw romHalt("the bootloader's signature sector cannot be read")
            }
            let digest = SHA256.hash(data: image)
            let trusted = device.efuses.readable(block: 2, layout: layout)
            var t: [UInt8] = []
            for w in trusted { t.appendLE(w) }
            if let problem = SignatureCheck.check(sector: sector, imageDigest: digest, trustedKeyDigest: t) {
                plain("Sig block 0 invalid: \(problem)")
                rom("secure boot check fail")
                throw romHalt("ROM secure boot check failed: \(problem)")
            }
            clock += 0.008
        }
        rom("entry 0x\(hex8(head[4..<8].loadLE(UInt32.self)))")
    }
}
