/* The MIG profile tables, as data, transcribed from
 * NVIDIA's MIG User Guide (supported MIG profiles and their placements,
 * docs.nvidia.com/datacenter/tesla/mig-user-guide). A new GPU is one more
 * gs__models[] row (and, for a new slice family, one more geometry). Where the
 * reference has no figure the value is 0 (unknown): NVML reports it on live
 * hardware. */
#include "catalog/catalog_int.h"

#define B(s) (1u << (s))
#define SPAN(n) ((1u << (n)) - 1u) /* starts 0..n-1 */
/* "GiB reported" to MiB, rounded (no figure of the reference is a tie). */
#define GIB(x) ((uint64_t)((x)*1024.0 + 0.5))

/* Compute-instance profiles per GI size, starts on the GI's compute axis:
 * {id, compute slices, max count, starts}. */
#define CIS_1G .n_ci = 1, .ci = {{GS_CI_1C, 1, 1, B(0)}}
#define CIS_2G                                                                 \
  .n_ci = 2, .ci = {{GS_CI_1C, 1, 2, SPAN(2)}, {GS_CI_2C, 2, 1, B(0)}}
#define CIS_3G                                                                 \
  .n_ci = 3, .ci = {{GS_CI_1C, 1, 3, SPAN(3)},                                 \
                    {GS_CI_2C, 2, 1, B(0)},                                    \
                    {GS_CI_3C, 3, 1, B(0)}}
/* 4g has no 3c. */
#define CIS_4G                                                                 \
  .n_ci = 3, .ci = {{GS_CI_1C, 1, 4, SPAN(4)},                                 \
                    {GS_CI_2C, 2, 2, B(0) | B(2)},                             \
                    {GS_CI_4C, 4, 1, B(0)}}
/* The reference lists 4c (max 1) in 7g without its starts; {0} as in the 4g
 * GI, and as 4c.7g + 3c.7g (3c at 4) needs. */
#define CIS_7G                                                                 \
  .n_ci = 5, .ci = {{GS_CI_1C, 1, 7, SPAN(7)},                                 \
                    {GS_CI_2C, 2, 3, B(0) | B(2) | B(4)},                      \
                    {GS_CI_3C, 3, 2, B(0) | B(4)},                             \
                    {GS_CI_4C, 4, 1, B(0)},                                    \
                    {GS_CI_7C, 7, 1, B(0)}}

/* NVML_GPU_INSTANCE_PROFILE_* values. */
enum {
  NVML_1_SLICE = 0,
  NVML_2_SLICE = 1,
  NVML_3_SLICE = 2,
  NVML_4_SLICE = 3,
  NVML_7_SLICE = 4,
  NVML_1_SLICE_REV1 = 7,
  NVML_2_SLICE_REV1 = 8,
  NVML_1_SLICE_REV2 = 9
};

/* A100, H100, H200, GH200, B200: 7 compute and 8 memory slices, in
 * nvidia-smi -lgip order. */
const gs__geometry_t gs__geometry_7x8 = {
    .name = "7 compute / 8 memory slices",
    .memory_slices = 8,
    .compute_slices = 7,
    .n_gi = 7,
    .gi =
        {
            {.id = 19,
             .nvml_index = NVML_1_SLICE,
             .compute_slices = 1,
             .memory_slices = 1,
             .max_count = 7,
             .start_mask = SPAN(7),
             CIS_1G},
            {.id = 20,
             .nvml_index = NVML_1_SLICE_REV1,
             .compute_slices = 1,
             .memory_slices = 1,
             .max_count = 1,
             .start_mask = SPAN(7),
             .media_extensions = true,
             CIS_1G},
            {.id = 15,
             .nvml_index = NVML_1_SLICE_REV2,
             .compute_slices = 1,
             .memory_slices = 2,
             .max_count = 4,
             .start_mask = B(0) | B(2) | B(4) | B(6),
             CIS_1G}, /* 1g, 2x memory */
            {.id = 14,
             .nvml_index = NVML_2_SLICE,
             .compute_slices = 2,
             .memory_slices = 2,
             .max_count = 3,
             .start_mask = B(0) | B(2) | B(4),
             CIS_2G},
            {.id = 9,
             .nvml_index = NVML_3_SLICE,
             .compute_slices = 3,
             .memory_slices = 4,
             .max_count = 2,
             .start_mask = B(0) | B(4),
             CIS_3G},
            {.id = 5,
             .nvml_index = NVML_4_SLICE,
             .compute_slices = 4,
             .memory_slices = 4,
             .max_count = 1,
             .start_mask = B(0),
             CIS_4G},
            {.id = 0,
             .nvml_index = NVML_7_SLICE,
             .compute_slices = 7,
             .memory_slices = 8,
             .max_count = 1,
             .start_mask = B(0),
             CIS_7G},
        },
};

/* A30: 4 compute and 4 memory slices. */
const gs__geometry_t gs__geometry_4x4 = {
    .name = "4 compute / 4 memory slices",
    .memory_slices = 4,
    .compute_slices = 4,
    .n_gi = 5,
    .gi =
        {
            {.id = 14,
             .nvml_index = NVML_1_SLICE,
             .compute_slices = 1,
             .memory_slices = 1,
             .max_count = 4,
             .start_mask = SPAN(4),
             CIS_1G},
            {.id = 21,
             .nvml_index = NVML_1_SLICE_REV1,
             .compute_slices = 1,
             .memory_slices = 1,
             .max_count = 1,
             .start_mask = SPAN(4),
             .media_extensions = true,
             CIS_1G},
            {.id = 5,
             .nvml_index = NVML_2_SLICE,
             .compute_slices = 2,
             .memory_slices = 2,
             .max_count = 2,
             .start_mask = B(0) | B(2),
             CIS_2G},
            {.id = 6,
             .nvml_index = NVML_2_SLICE_REV1,
             .compute_slices = 2,
             .memory_slices = 2,
             .max_count = 1,
             .start_mask = B(0) | B(2),
             .media_extensions = true,
             CIS_2G},
            {.id = 0,
             .nvml_index = NVML_4_SLICE,
             .compute_slices = 4,
             .memory_slices = 4,
             .max_count = 1,
             .start_mask = B(0),
             CIS_4G},
        },
};

/* {id, copy engines, decoders, encoders, JPEG, OFA}, in geometry order. */
static const gs__engines_t engines_a30[] = {
    {14, 1, 0, 0, 0, 0}, {21, 1, 1, 0, 1, 1}, {5, 2, 2, 0, 0, 0},
    {6, 2, 2, 0, 1, 1},  {0, 4, 4, 0, 1, 1},
};

/* The reference gives A100 CE and DEC only; JPEG/OFA are its "+me adds 1
 * JPEG, 1 OFA". A100 7g JPEG/OFA: no figure, 0 (NVML reports it). */
static const gs__engines_t engines_a100[] = {
    {19, 1, 0, 0, 0, 0}, {20, 1, 1, 0, 1, 1}, {15, 1, 1, 0, 0, 0},
    {14, 2, 1, 0, 0, 0}, {9, 3, 2, 0, 0, 0},  {5, 4, 2, 0, 0, 0},
    {0, 7, 5, 0, 0, 0},
};

/* H100 and H200 (and GH200, the same GH100 die): JPEG = decoders; OFA only
 * on +me and 7g. */
static const gs__engines_t engines_h100[] = {
    {19, 1, 1, 0, 1, 0}, {20, 1, 1, 0, 1, 1}, {15, 1, 1, 0, 1, 0},
    {14, 2, 2, 0, 2, 0}, {9, 3, 3, 0, 3, 0},  {5, 4, 4, 0, 4, 0},
    {0, 8, 7, 0, 7, 1},
};

const gs__model_t gs__models[] = {
    {
        .model = "a30",
        .product = "NVIDIA A30",
        .geometry = &gs__geometry_4x4,
        .engines = engines_a30,
        .total_sms = 56,
        .memory_gb = 24,
        .n_pci_ids = 1,
        .pci_device_ids = {0x20B710DE},
        .profiles =
            {
                {14, "1g.6gb", GIB(5.81), 14},
                {21, "1g.6gb+me", GIB(5.81), 14},
                {5, "2g.12gb", GIB(11.69), 28},
                {6, "2g.12gb+me", GIB(11.69), 28},
                {0, "4g.24gb", GIB(23.50), 56},
            },
    },
    {
        .model = "a100-40gb",
        .product = "NVIDIA A100-SXM4-40GB",
        .geometry = &gs__geometry_7x8,
        .engines = engines_a100,
        .total_sms = 108, /* physical; 7g gets 98 */
        .memory_gb = 40,
        .n_pci_ids = 2,
        .pci_device_ids = {0x20B010DE /* SXM4 */, 0x20F110DE /* PCIe */},
        .profiles =
            {
                {19, "1g.5gb", GIB(4.75), 14},
                {20, "1g.5gb+me", GIB(4.75), 14},
                {15, "1g.10gb", GIB(9.62), 14}, /* R525+ */
                {14, "2g.10gb", GIB(9.62), 28},
                {9, "3g.20gb", GIB(19.50), 42},
                {5, "4g.20gb", GIB(19.50), 56},
                {0, "7g.40gb", GIB(39.25), 98},
            },
    },
    {
        .model = "a100-80gb",
        .product = "NVIDIA A100-SXM4-80GB",
        .geometry = &gs__geometry_7x8,
        .engines = engines_a100,
        .total_sms = 108, /* physical; 7g gets 98 */
        .memory_gb = 80,
        .n_pci_ids = 2,
        .pci_device_ids = {0x20B210DE /* SXM4 */, 0x20B510DE /* PCIe */},
        .profiles =
            {
                {19, "1g.10gb", GIB(9.50), 14},
                {20, "1g.10gb+me", GIB(9.50), 14},
                {15, "1g.20gb", GIB(19.50), 14},
                {14, "2g.20gb", GIB(19.50), 28},
                {9, "3g.40gb", GIB(39.25), 42},
                {5, "4g.40gb", GIB(39.25), 56},
                /* The reference says "~79" GiB: unknown, NVML reports it. */
                {0, "7g.80gb", 0, 98},
            },
    },
    {
        /* H100 PCIe (0x2331) shares the geometry but has fewer SMs than the
         * SXM part; NVML's live report wins there. */
        .model = "h100-80gb",
        .product = "NVIDIA H100 80GB HBM3",
        .geometry = &gs__geometry_7x8,
        .engines = engines_h100,
        .total_sms = 132,
        .memory_gb = 80,
        .n_pci_ids = 2,
        .pci_device_ids = {0x233010DE /* SXM5 */, 0x233110DE /* PCIe */},
        .profiles =
            {
                {19, "1g.10gb", GIB(9.75), 16},
                {20, "1g.10gb+me", GIB(9.75), 16},
                {15, "1g.20gb", GIB(19.62), 26},
                {14, "2g.20gb", GIB(19.62), 32},
                {9, "3g.40gb", GIB(39.50), 60},
                {5, "4g.40gb", GIB(39.50), 64},
                {0, "7g.80gb", GIB(79.25), 132},
            },
    },
    {
        .model = "h100-94gb",
        .product = "NVIDIA H100 NVL",
        .geometry = &gs__geometry_7x8,
        .engines = engines_h100,
        .total_sms = 132,
        .memory_gb = 94,
        .n_pci_ids = 1,
        .pci_device_ids = {0x232110DE},
        .profiles =
            {
                {19, "1g.12gb", GIB(10.75), 16},
                {20, "1g.12gb+me", GIB(10.75), 16},
                {15, "1g.24gb", GIB(21.62), 26},
                {14, "2g.24gb", GIB(21.62), 32},
                {9, "3g.47gb", GIB(46.38), 60},
                {5, "4g.47gb", GIB(46.38), 64},
                {0, "7g.94gb", GIB(93.12), 132},
            },
    },
    {
        .model = "h200",
        .product = "NVIDIA H200",
        .geometry = &gs__geometry_7x8,
        .engines = engines_h100,
        .total_sms = 132,
        .memory_gb = 141,
        .n_pci_ids = 1,
        .pci_device_ids = {0x233510DE},
        .profiles =
            {
                {19, "1g.18gb", GIB(16.00), 16},
                {20, "1g.18gb+me", GIB(16.00), 16},
                {15, "1g.35gb", GIB(32.50), 26},
                {14, "2g.35gb", GIB(32.50), 32},
                {9, "3g.71gb", GIB(69.75), 60},
                {5, "4g.71gb", GIB(69.75), 64},
                {0, "7g.141gb", GIB(140.00), 132},
            },
    },
    {
        /* The reference gives GH200 names only: memory unknown (NVML reports
         * it). SMs are the H100/H200 ones: GH200's GPU is a GH100, 132 SMs. */
        .model = "gh200",
        .product = "NVIDIA GH200 144G HBM3e",
        .geometry = &gs__geometry_7x8,
        .engines = engines_h100,
        .total_sms = 132,
        .memory_gb = 144,
        .n_pci_ids = 1,
        .pci_device_ids = {0x234210DE},
        .profiles =
            {
                {19, "1g.18gb", 0, 16},
                {20, "1g.18gb+me", 0, 16},
                {15, "1g.36gb", 0, 26},
                {14, "2g.36gb", 0, 32},
                {9, "3g.72gb", 0, 60},
                {5, "4g.72gb", 0, 64},
                {0, "7g.144gb", 0, 132},
            },
    },
    {
        /* B200: the reference has no 3g/4g/7g SMs or GiB, no total SMs and
         * no engine counts: 0 (unknown), NVML reports them. */
        .model = "b200",
        .product = "NVIDIA B200",
        .geometry = &gs__geometry_7x8,
        .engines = NULL,
        .total_sms = 0,
        .memory_gb = 180,
        .n_pci_ids = 1,
        .pci_device_ids = {0x290110DE},
        .profiles =
            {
                {19, "1g.23gb", GIB(22.00), 18},
                {20, "1g.23gb+me", GIB(22.00), 18},
                {15, "1g.45gb", GIB(44.25), 30},
                {14, "2g.45gb", GIB(44.25), 36},
                {9, "3g.90gb", 0, 0},
                {5, "4g.90gb", 0, 0},
                {0, "7g.180gb", 0, 0},
            },
    },
};

const unsigned gs__n_models = sizeof gs__models / sizeof gs__models[0];
