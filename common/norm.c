#include "norm.h"
