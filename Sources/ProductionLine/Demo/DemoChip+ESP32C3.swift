extension DemoChip {
    /// ESP32-C3 (RISC-V, ELF machine 243, compressed instructions). Addresses from the C3 memory
    /// map (``ChipSpec/esp32c3``) and the ESP-IDF v5.2.2 hello-world images in
    /// ../shared/fixtures/espressif/chips/ESP32_C3: the bootloader's DRAM from 0x3FCD5820
    /// (descriptor first), its `.iram.text` at 0x403CC710 holding the entry 0x403CC71A,
    /// `.iram_loader.text` at 0x403CE710; the app's `.iram0.text` at 0x40380000 (vector table
    /// first, entry 0x40380250), data in DRAM right behind the IRAM it shares (0x3FC83000 for the
    /// demo's 12 KiB of IRAM), code at 0x42000020 and read-only data behind the code's MMU pages.
    /// ESP-IDF's defaults: 80 MHz DIO flash, chip revisions v0.3–v1.99.
    public static let esp32c3 = DemoChip(
        spec: .esp32c3, elfMachine: 243, elfFlags: 0x1, flashMode: "dio", flashFrequency: "80m",
        imageMinRevision: 3, imageMinRevisionFull: 3, imageMaxRevisionFull: 199, manifestMinRevision: 0,
        bootloaderEntry: 0x403C_C71A,
        bootloaderSections: [
            Section(".dram0.bootdesc", .at(0x3FCD_5820), .bootloaderDescriptor, flags: 3),
            Section(".dram0.rodata", .at(0x3FCD_5870), .banner(size: 2048, seed: 51), flags: 3),
            Section(".iram.text", .at(0x403C_C710), .filler(4096, seed: 52), flags: 6),
            Section(".iram_loader.text", .at(0x403C_E710), .filler(8192, seed: 53), flags: 6),
        ],
        appEntry: 0x4038_0250,
        appSections: [
            Section(".flash.appdesc", .afterFlashText(0x3C00_0020), .appDescriptor, flags: 2),
            Section(".flash.rodata", .afterFlashText(0x3C00_0120), .filler(24 * 1024, seed: 61), flags: 2),
            Section(".dram0.data", .at(0x3FC8_3000), .filler(4 * 1024, seed: 62), flags: 3),
            Section(".iram0.text", .at(0x4038_0000), .filler(12 * 1024, seed: 63), flags: 6),
            Section(".flash.text", .at(0x4200_0020), .code(seed: 64), flags: 6),
        ],
        sdkconfigHead: "CONFIG_IDF_TARGET=\"esp32c3\"\n",
        // Download mode only over UART (the line's port), not through USB-Serial-JTAG (the JTAG
        // and download-cache fuses are the bootloader's own, their group locked by WR_DIS bit 2).
        finalBurn: ["DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE"])
}
