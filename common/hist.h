/* placeholder until the bench helper writes the histogram module */
#ifndef IDL_HIST_H
#define IDL_HIST_H
typedef struct idl_hist idl_hist;
#endif
