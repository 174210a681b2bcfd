/*
 * Native pixel statistics for imaging.py: levelling the ink, framing the digit,
 * measuring its strokes and its centre of mass, each in one pass over the picture.
 *
 * imaging.py holds the reference implementation of every step in numpy; this file
 * repeats the same arithmetic, in the same float32 operations and the same order,
 * so both give the same pixels (tests/unit/test_digitcore.py compares them). On a
 * small upload the numpy version spends its time on the per-call overhead of some
 * fifty array operations; here the whole step is one call. Every index stays inside
 * the shape its buffer declares; png_rows, the one function given bytes from a
 * client (inflated PNG rows), checks their length against the declared size first.
 * The GIL is released while pixels are read, so a large picture prepared on a
 * worker thread does not hold up the event loop.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The constants of imaging.py; tests check that both files agree. */
#define EXTREME_QUANTILE 1e-4
#define MIN_INK_CONTRAST 40.0
#define NOISE_SPREADS 3.0
#define INK_LEVEL 64.0f
#define FAINT_INK_LEVEL 0.0f
#define MAX_EDGE_GROWTH 2
#define STROKE_LEVEL 128.0f
#define MIN_GAP_FRACTION 0.05
#define MIN_GAP_PIXELS 3
#define SPECK_MASS_FRACTION 0.05
#define BORDER_FRACTION_DIVISOR 50

enum status { FOUND = 0, NO_CONTRAST = 1, NO_DISTINCT_INK = 2, NO_MEMORY = 3 };

typedef struct {
    Py_ssize_t start;
    Py_ssize_t stop;
} span;

typedef struct {
    int status;
    span rows;
    span columns;
    double stroke_width;
} located_digit;

/* ---- order statistics ------------------------------------------------------ */

static void swap_floats(float *a, float *b) {
    float kept = *a;
    *a = *b;
    *b = kept;
}

static int compare_floats(const void *a, const void *b) {
    float left = *(const float *)a, right = *(const float *)b;
    return (left > right) - (left < right);
}

/* Rearrange values so values[k] is the k-th smallest, smaller ones before it and
 * larger ones after. Three-way partitions keep runs of equal levels (a plain
 * border) linear; a sequence that still needs more than SELECT_MAX_ROUNDS rounds
 * is sorted instead, so no picture can make this quadratic. */
#define SELECT_MAX_ROUNDS 64
static void select_kth(float *values, Py_ssize_t count, Py_ssize_t k) {
    Py_ssize_t low = 0, high = count - 1;
    for (int round = 0; high > low; round++) {
        if (round == SELECT_MAX_ROUNDS) {
            qsort(values + low, (size_t)(high - low + 1), sizeof(float),
                  compare_floats);
            return;
        }
        Py_ssize_t middle = low + (high - low) / 2;
        float a = values[low], b = values[middle], c = values[high];
        float pivot = (a < b) ? ((b < c) ? b : (a < c) ? c : a)
                              : ((a < c) ? a : (b < c) ? c : b);
        /* [low, below) < pivot, [below, next) == pivot, (above, high] > pivot. */
        Py_ssize_t below = low, next = low, above = high;
        while (next <= above) {
            if (values[next] < pivot) {
                swap_floats(&values[below++], &values[next++]);
            } else if (values[next] > pivot) {
                swap_floats(&values[next], &values[above--]);
            } else {
                next++;
            }
        }
        if (k < below) high = below - 1;
        else if (k > above) low = above + 1;
        else return;
    }
}

/* The k-th and (k+1)-th smallest values (the second clamped to the last one). */
static void select_pair(float *values, Py_ssize_t count, Py_ssize_t k, float *kth,
                        float *next) {
    select_kth(values, count, k);
    *kth = values[k];
    if (k + 1 >= count) {
        *next = values[k];
        return;
    }
    float smallest_above = values[k + 1];
    for (Py_ssize_t i = k + 2; i < count; i++) {
        if (values[i] < smallest_above) smallest_above = values[i];
    }
    *next = smallest_above;
}

/* ---- extract_ink ------------------------------------------------------------ */

/* Copy the ring about 2 % of the picture wide along its edges, as _border_pixels
 * slices it (rows that both the top and bottom slice cover are copied twice). */
static Py_ssize_t copy_border(const float *gray, Py_ssize_t height, Py_ssize_t width,
                              float *border) {
    Py_ssize_t ring = (height < width ? height : width) / BORDER_FRACTION_DIVISOR;
    if (ring < 1) ring = 1;
    Py_ssize_t count = 0;
    for (Py_ssize_t row = 0; row < ring; row++) {
        memcpy(border + count, gray + row * width, (size_t)width * sizeof(float));
        count += width;
    }
    for (Py_ssize_t row = height - ring; row < height; row++) {
        memcpy(border + count, gray + row * width, (size_t)width * sizeof(float));
        count += width;
    }
    for (Py_ssize_t row = ring; row < height - ring; row++) {
        for (Py_ssize_t column = 0; column < ring; column++) {
            border[count++] = gray[row * width + column];
        }
    }
    for (Py_ssize_t row = ring; row < height - ring; row++) {
        for (Py_ssize_t column = width - ring; column < width; column++) {
            border[count++] = gray[row * width + column];
        }
    }
    return count;
}

static Py_ssize_t border_size(Py_ssize_t height, Py_ssize_t width) {
    Py_ssize_t ring = (height < width ? height : width) / BORDER_FRACTION_DIVISOR;
    if (ring < 1) ring = 1;
    Py_ssize_t middle_rows = height - 2 * ring > 0 ? height - 2 * ring : 0;
    return 2 * ring * width + 2 * ring * middle_rows;
}

/* The border's median and the upper quartile of its deviations from it, with
 * numpy's float32 arithmetic (_paper_level_and_spread, _linear_quantile). */
static void paper_level_and_spread(float *border, Py_ssize_t count, double *paper,
                                   double *spread) {
    float middle_low, middle_high;
    select_pair(border, count, (count - 1) / 2, &middle_low, &middle_high);
    if (count % 2 == 1) middle_high = middle_low;
    float level = (middle_low + middle_high) / 2.0f;
    *paper = level;

    for (Py_ssize_t i = 0; i < count; i++) border[i] = fabsf(border[i] - level);
    double position = 0.75 * (double)(count - 1);
    Py_ssize_t low = (Py_ssize_t)floor(position);
    double gamma = position - (double)low;
    float below, above;
    select_pair(border, count, low, &below, &above);
    if (gamma >= 0.5) {
        *spread = above - (above - below) * (float)(1.0 - gamma);
    } else {
        *spread = below + (above - below) * (float)gamma;
    }
}

/* The 1e-4 and 1 - 1e-4 quantiles to the nearest level, as _quantiles finds them. */
static void extreme_levels(const float *gray, Py_ssize_t size, double *darkest,
                           double *lightest) {
    double low = EXTREME_QUANTILE * (double)size;
    double high = (1.0 - EXTREME_QUANTILE) * (double)size;
    if (low < 1.0 && (double)(size - 1) < high && high < (double)size) {
        float minimum = gray[0], maximum = gray[0];
        for (Py_ssize_t i = 1; i < size; i++) {
            if (gray[i] < minimum) minimum = gray[i];
            if (gray[i] > maximum) maximum = gray[i];
        }
        *darkest = floor(fmin(fmax((double)minimum, 0.0), 255.0));
        *lightest = floor(fmin(fmax((double)maximum, 0.0), 255.0));
        return;
    }
    Py_ssize_t counts[256] = {0};
    for (Py_ssize_t i = 0; i < size; i++) {
        float value = gray[i];
        /* np.clip then a uint8 cast, which truncates towards zero; a NaN, which no
         * decoded picture holds, would count as level 0. */
        int level = value > 0.0f ? (value < 255.0f ? (int)value : 255) : 0;
        counts[level]++;
    }
    /* searchsorted(cumulative, x, "right"): the first level whose count passes x. */
    Py_ssize_t cumulative = 0;
    int found_low = 256, found_high = 256;
    for (int level = 0; level < 256; level++) {
        cumulative += counts[level];
        if (found_low == 256 && (double)cumulative > low) found_low = level;
        if (found_high == 256 && (double)cumulative > high) found_high = level;
    }
    *darkest = found_low;
    *lightest = found_high;
}

static int extract_ink(const float *gray, Py_ssize_t height, Py_ssize_t width,
                       float *border, float *ink) {
    Py_ssize_t size = height * width;
    Py_ssize_t count = copy_border(gray, height, width, border);
    double paper, spread, darkest, lightest;
    paper_level_and_spread(border, count, &paper, &spread);
    extreme_levels(gray, size, &darkest, &lightest);

    double polarity = paper - darkest > lightest - paper ? -1.0 : 1.0;
    double extent = fmax(paper - darkest, lightest - paper);
    double noise = fmin(NOISE_SPREADS * spread, extent / 2);
    double peak = extent - noise;
    if (peak < MIN_INK_CONTRAST) return NO_CONTRAST;

    /* numpy applies each Python float to a float32 array as a float32. */
    float paper_f = (float)paper, polarity_f = (float)polarity;
    float noise_f = (float)noise, scale_f = (float)(255.0 / peak);
    for (Py_ssize_t i = 0; i < size; i++) {
        float value = (polarity_f * (gray[i] - paper_f) - noise_f) * scale_f;
        ink[i] = value < 0.0f ? 0.0f : value > 255.0f ? 255.0f : value;
    }
    return FOUND;
}

/* ---- find_digit_box ---------------------------------------------------------- */

static float weight_of(float value) { return value >= INK_LEVEL ? value : 0.0f; }

static void row_profile(const float *ink, Py_ssize_t width, span rows, span columns,
                        double *profile) {
    for (Py_ssize_t row = rows.start; row < rows.stop; row++) {
        double total = 0.0;
        for (Py_ssize_t column = columns.start; column < columns.stop; column++) {
            total += weight_of(ink[row * width + column]);
        }
        profile[row - rows.start] = total;
    }
}

static void column_profile(const float *ink, Py_ssize_t width, span rows,
                           span columns, double *profile) {
    for (Py_ssize_t column = columns.start; column < columns.stop; column++) {
        profile[column - columns.start] = 0.0;
    }
    for (Py_ssize_t row = rows.start; row < rows.stop; row++) {
        for (Py_ssize_t column = columns.start; column < columns.stop; column++) {
            profile[column - columns.start] += weight_of(ink[row * width + column]);
        }
    }
}

/* The span of the substantial groups of non-empty entries (_heaviest_run); the
 * profile has at least one non-empty entry. */
static span heaviest_run(const double *profile, Py_ssize_t size) {
    double gap_pixels = nearbyint(MIN_GAP_FRACTION * (double)size);
    Py_ssize_t min_gap = gap_pixels > MIN_GAP_PIXELS ? (Py_ssize_t)gap_pixels
                                                     : MIN_GAP_PIXELS;
    /* First pass: the heaviest group's mass. */
    double heaviest = 0.0, mass = 0.0;
    Py_ssize_t previous = -1;
    for (Py_ssize_t i = 0; i < size; i++) {
        if (profile[i] <= 0.0) continue;
        if (previous >= 0 && i - previous > min_gap) {
            if (mass > heaviest) heaviest = mass;
            mass = 0.0;
        }
        mass += profile[i];
        previous = i;
    }
    if (mass > heaviest) heaviest = mass;

    /* Second pass: from the first kept group's start to the last one's end. */
    double threshold = SPECK_MASS_FRACTION * heaviest;
    span kept = {-1, -1};
    Py_ssize_t group_start = -1;
    mass = 0.0;
    previous = -1;
    for (Py_ssize_t i = 0; i <= size; i++) {
        int ends_group = i == size || (profile[i] > 0.0 && previous >= 0 &&
                                       i - previous > min_gap);
        if (ends_group && group_start >= 0 && mass >= threshold) {
            if (kept.start < 0) kept.start = group_start;
            kept.stop = previous + 1;
        }
        if (i == size) break;
        if (profile[i] <= 0.0) continue;
        if (ends_group || group_start < 0) {
            group_start = i;
            mass = 0.0;
        }
        mass += profile[i];
        previous = i;
    }
    return kept;
}

static int spans_all_ink(const double *profile, Py_ssize_t size, span kept) {
    for (Py_ssize_t i = 0; i < kept.start; i++) {
        if (profile[i] != 0.0) return 0;
    }
    for (Py_ssize_t i = kept.stop; i < size; i++) {
        if (profile[i] != 0.0) return 0;
    }
    return 1;
}

static int has_faint_ink(const float *ink, Py_ssize_t width, span rows,
                         span columns) {
    for (Py_ssize_t row = rows.start; row < rows.stop; row++) {
        for (Py_ssize_t column = columns.start; column < columns.stop; column++) {
            if (ink[row * width + column] > FAINT_INK_LEVEL) return 1;
        }
    }
    return 0;
}

/* Widen the box by up to MAX_EDGE_GROWTH pixels of adjacent faint ink, one side
 * after another in the order _grow_over_faint_edges uses. */
static void grow_over_faint_edges(const float *ink, Py_ssize_t height,
                                  Py_ssize_t width, span *rows, span *columns) {
    for (int pass = 0; pass < MAX_EDGE_GROWTH; pass++) {
        if (rows->start > 0 &&
            has_faint_ink(ink, width, (span){rows->start - 1, rows->start}, *columns))
            rows->start--;
        if (rows->stop < height &&
            has_faint_ink(ink, width, (span){rows->stop, rows->stop + 1}, *columns))
            rows->stop++;
        if (columns->start > 0 &&
            has_faint_ink(ink, width, *rows,
                          (span){columns->start - 1, columns->start}))
            columns->start--;
        if (columns->stop < width &&
            has_faint_ink(ink, width, *rows, (span){columns->stop, columns->stop + 1}))
            columns->stop++;
    }
}

static int find_digit_box(const float *ink, Py_ssize_t height, Py_ssize_t width,
                          double *scratch, span *rows, span *columns) {
    int any_ink = 0;
    for (Py_ssize_t i = 0; i < height * width && !any_ink; i++) {
        any_ink = ink[i] >= INK_LEVEL;
    }
    if (!any_ink) return NO_DISTINCT_INK;

    span all_rows = {0, height}, all_columns = {0, width};
    double *rows_profile = scratch, *columns_profile = scratch + height;
    row_profile(ink, width, all_rows, all_columns, rows_profile);
    *rows = heaviest_run(rows_profile, height);
    column_profile(ink, width, *rows, all_columns, columns_profile);
    *columns = heaviest_run(columns_profile, width);
    if (!spans_all_ink(rows_profile, height, *rows) ||
        !spans_all_ink(columns_profile, width, *columns)) {
        /* Something was left out, which can change the other axis's profile. */
        row_profile(ink, width, all_rows, *columns, rows_profile);
        *rows = heaviest_run(rows_profile, height);
        column_profile(ink, width, *rows, all_columns, columns_profile);
        *columns = heaviest_run(columns_profile, width);
    }
    grow_over_faint_edges(ink, height, width, rows, columns);
    return FOUND;
}

/* Mean stroke width inside the box: twice the ink area per ink edge (_stroke_width),
 * the box framed by one empty pixel on every side. */
static double stroke_width(const float *ink, Py_ssize_t width, span rows,
                           span columns) {
    Py_ssize_t area = 0, edges = 0;
    for (Py_ssize_t row = rows.start; row < rows.stop; row++) {
        int left_is_ink = 0;
        for (Py_ssize_t column = columns.start; column < columns.stop; column++) {
            int is_ink = ink[row * width + column] >= STROKE_LEVEL;
            int above_is_ink =
                row > rows.start && ink[(row - 1) * width + column] >= STROKE_LEVEL;
            area += is_ink;
            edges += (is_ink != left_is_ink) + (is_ink != above_is_ink);
            left_is_ink = is_ink;
        }
        edges += left_is_ink;
    }
    for (Py_ssize_t column = columns.start; column < columns.stop; column++) {
        edges += ink[(rows.stop - 1) * width + column] >= STROKE_LEVEL;
    }
    return 2.0 * (double)area / (double)(edges > 1 ? edges : 1);
}

static located_digit locate(const float *gray, Py_ssize_t height, Py_ssize_t width,
                            float *ink) {
    located_digit found = {FOUND, {0, 0}, {0, 0}, 0.0};
    float *border = malloc((size_t)border_size(height, width) * sizeof(float));
    double *scratch = malloc((size_t)(height + width) * sizeof(double));
    if (border == NULL || scratch == NULL) {
        found.status = NO_MEMORY;
    } else {
        found.status = extract_ink(gray, height, width, border, ink);
    }
    if (found.status == FOUND) {
        found.status =
            find_digit_box(ink, height, width, scratch, &found.rows, &found.columns);
    }
    if (found.status == FOUND) {
        found.stroke_width = stroke_width(ink, width, found.rows, found.columns);
    }
    free(border);
    free(scratch);
    return found;
}

/* ---- Python interface ----------------------------------------------------------- */

/* Take a C-contiguous 2-D buffer of the given struct format ("f" or "B"). */
static int get_image_buffer(PyObject *object, Py_buffer *view, int flags,
                            const char *format, const char *name) {
    if (PyObject_GetBuffer(object, view, flags | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) <
        0)
        return -1;
    if (view->ndim != 2 || view->shape[0] < 1 || view->shape[1] < 1 ||
        strcmp(view->format, format) != 0) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be a non-empty 2-D array of struct format '%s'", name,
                     format);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *py_locate_digit(PyObject *module, PyObject *args) {
    PyObject *gray_object, *ink_object;
    if (!PyArg_ParseTuple(args, "OO:locate_digit", &gray_object, &ink_object))
        return NULL;
    Py_buffer gray, ink;
    if (get_image_buffer(gray_object, &gray, PyBUF_ND, "f", "gray") < 0) return NULL;
    if (get_image_buffer(ink_object, &ink, PyBUF_WRITABLE, "f", "ink") < 0) {
        PyBuffer_Release(&gray);
        return NULL;
    }
    if (ink.shape[0] != gray.shape[0] || ink.shape[1] != gray.shape[1]) {
        PyErr_SetString(PyExc_ValueError, "gray and ink must have the same shape");
        PyBuffer_Release(&gray);
        PyBuffer_Release(&ink);
        return NULL;
    }

    located_digit found;
    Py_BEGIN_ALLOW_THREADS
    found = locate(gray.buf, gray.shape[0], gray.shape[1], ink.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&gray);
    PyBuffer_Release(&ink);

    if (found.status == NO_MEMORY) return PyErr_NoMemory();
    return Py_BuildValue("(innnnd)", found.status, found.rows.start, found.rows.stop,
                         found.columns.start, found.columns.stop, found.stroke_width);
}

static PyObject *py_mass_moments(PyObject *module, PyObject *object) {
    Py_buffer digit;
    if (get_image_buffer(object, &digit, PyBUF_ND, "B", "digit") < 0) return NULL;
    const unsigned char *pixels = digit.buf;
    Py_ssize_t height = digit.shape[0], width = digit.shape[1];
    long long total = 0, row_moment = 0, column_moment = 0;
    for (Py_ssize_t row = 0; row < height; row++) {
        for (Py_ssize_t column = 0; column < width; column++) {
            long long value = pixels[row * width + column];
            total += value;
            row_moment += value * row;
            column_moment += value * column;
        }
    }
    PyBuffer_Release(&digit);
    return Py_BuildValue("(LLL)", total, row_moment, column_moment);
}

/* ---- PNG rows ------------------------------------------------------------------- */

/* Luminance as Pillow's RGB to "L" conversion computes it (ITU-R 601-2, rounded). */
static unsigned char luminance(const unsigned char *rgb) {
    return (unsigned char)((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >>
                           16);
}

static unsigned char paeth(int left, int above, int above_left) {
    int estimate = left + above - above_left;
    int to_left = abs(estimate - left), to_above = abs(estimate - above);
    int to_above_left = abs(estimate - above_left);
    if (to_left <= to_above && to_left <= to_above_left) return (unsigned char)left;
    if (to_above <= to_above_left) return (unsigned char)above;
    return (unsigned char)above_left;
}

/* Undo one row's PNG filter in place; 0 for an unknown filter type. */
static int unfilter_row(int filter, unsigned char *row, const unsigned char *above,
                        Py_ssize_t row_bytes, int pixel_bytes) {
    switch (filter) {
    case 0:
        return 1;
    case 1:
        for (Py_ssize_t i = pixel_bytes; i < row_bytes; i++)
            row[i] += row[i - pixel_bytes];
        return 1;
    case 2:
        for (Py_ssize_t i = 0; i < row_bytes; i++) row[i] += above[i];
        return 1;
    case 3:
        for (Py_ssize_t i = 0; i < row_bytes; i++) {
            int left = i >= pixel_bytes ? row[i - pixel_bytes] : 0;
            row[i] += (unsigned char)((left + above[i]) / 2);
        }
        return 1;
    case 4:
        for (Py_ssize_t i = 0; i < row_bytes; i++) {
            int left = i >= pixel_bytes ? row[i - pixel_bytes] : 0;
            int above_left = i >= pixel_bytes ? above[i - pixel_bytes] : 0;
            row[i] += paeth(left, above[i], above_left);
        }
        return 1;
    default:
        return 0;
    }
}

/* Split one unfiltered row of `channels` bytes a pixel into luminance and alpha. */
static void split_row(const unsigned char *row, Py_ssize_t width, int channels,
                      unsigned char *gray, unsigned char *alpha) {
    for (Py_ssize_t x = 0; x < width; x++) {
        const unsigned char *pixel = row + x * channels;
        gray[x] = channels >= 3 ? luminance(pixel) : pixel[0];
        if (alpha != NULL) alpha[x] = pixel[channels - 1];
    }
}

static PyObject *py_png_rows(PyObject *module, PyObject *args) {
    Py_buffer raw;
    Py_ssize_t width, height;
    int channels;
    if (!PyArg_ParseTuple(args, "y*nni:png_rows", &raw, &width, &height, &channels))
        return NULL;
    PyObject *result = NULL, *gray = NULL, *alpha = NULL;
    unsigned char *rows = NULL;
    if (width < 1 || height < 1 || channels < 1 || channels > 4 ||
        width > PY_SSIZE_T_MAX / 4 / height) {
        PyErr_SetString(PyExc_ValueError, "png_rows: bad width, height or channels");
        goto done;
    }
    Py_ssize_t row_bytes = width * channels;
    if (raw.len != height * (row_bytes + 1)) {
        PyErr_SetString(PyExc_ValueError, "png_rows: data does not match the size");
        goto done;
    }
    int has_alpha = channels == 2 || channels == 4;
    gray = PyBytes_FromStringAndSize(NULL, width * height);
    alpha = has_alpha ? PyBytes_FromStringAndSize(NULL, width * height)
                      : Py_NewRef(Py_None);
    /* Two rows: the one being unfiltered and the one above it (zeros at first). */
    rows = calloc(2, (size_t)row_bytes);
    if (gray == NULL || alpha == NULL || rows == NULL) {
        if (rows == NULL) PyErr_NoMemory();
        goto done;
    }
    unsigned char *gray_out = (unsigned char *)PyBytes_AS_STRING(gray);
    unsigned char *alpha_out =
        has_alpha ? (unsigned char *)PyBytes_AS_STRING(alpha) : NULL;
    const unsigned char *source = raw.buf;
    int known_filters = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t y = 0; y < height && known_filters; y++) {
        unsigned char *row = rows + (y % 2) * row_bytes;
        const unsigned char *above = rows + ((y + 1) % 2) * row_bytes;
        const unsigned char *line = source + y * (row_bytes + 1);
        memcpy(row, line + 1, (size_t)row_bytes);
        known_filters = unfilter_row(line[0], row, above, row_bytes, channels);
        split_row(row, width, channels, gray_out + y * width,
                  has_alpha ? alpha_out + y * width : NULL);
    }
    Py_END_ALLOW_THREADS
    if (known_filters) {
        result = PyTuple_Pack(2, gray, alpha);
    } else {
        result = Py_NewRef(Py_None);
    }
done:
    free(rows);
    Py_XDECREF(gray);
    Py_XDECREF(alpha);
    PyBuffer_Release(&raw);
    return result;
}

static PyMethodDef methods[] = {
    {"locate_digit", py_locate_digit, METH_VARARGS,
     "locate_digit(gray, ink) -> (status, top, bottom, left, right, stroke_width)\n\n"
     "Level float32 `gray` (H, W) into `ink` (the same shape, written in place) and "
     "frame the digit in it. status is 0 when found, 1 when nothing stands out from "
     "the paper, 2 when no pixel reaches the ink level; the box is valid only for 0."},
    {"png_rows", py_png_rows, METH_VARARGS,
     "png_rows(raw, width, height, channels) -> (gray, alpha) | None\n\n"
     "Undo the filters of inflated 8-bit PNG rows (each led by its filter byte) and "
     "split them into luminance and, for 2 or 4 channels, alpha bytes. None when a "
     "row names an unknown filter."},
    {"mass_moments", py_mass_moments, METH_O,
     "mass_moments(digit) -> (total, row_moment, column_moment)\n\n"
     "Exact integer sums of a uint8 (H, W) array: its mass and its first moments."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_digitcore",
    "Native pixel statistics for mnist_backend.imaging.", -1, methods,
};

/* The module's copy of the constants, as `CONSTANTS`, so tests can compare them. */
static int add_constants(PyObject *module) {
    PyObject *constants = Py_BuildValue(
        "{sdsdsdsdsdsisdsdsisdsi}", "EXTREME_QUANTILE", EXTREME_QUANTILE,
        "MIN_INK_CONTRAST", MIN_INK_CONTRAST, "NOISE_SPREADS", NOISE_SPREADS,
        "INK_LEVEL", (double)INK_LEVEL, "FAINT_INK_LEVEL", (double)FAINT_INK_LEVEL,
        "MAX_EDGE_GROWTH", MAX_EDGE_GROWTH, "STROKE_LEVEL", (double)STROKE_LEVEL,
        "MIN_GAP_FRACTION", MIN_GAP_FRACTION, "MIN_GAP_PIXELS", MIN_GAP_PIXELS,
        "SPECK_MASS_FRACTION", SPECK_MASS_FRACTION, "BORDER_FRACTION_DIVISOR",
        BORDER_FRACTION_DIVISOR);
    if (constants == NULL) return -1;
    if (PyModule_AddObject(module, "CONSTANTS", constants) < 0) {
        Py_DECREF(constants);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__digitcore(void) {
    PyObject *module = PyModule_Create(&module_definition);
    if (module != NULL && add_constants(module) < 0) Py_CLEAR(module);
    return module;
}
