import { isolationSuite } from './isolation.suite';
import { corral } from './helpers';

isolationSuite(corral.run, 'cold');
